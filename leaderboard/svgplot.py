"""A very small SVG plotter: axes with linear or log scales, lines, bands, markers, steps and a legend.

Why not matplotlib: a site of 10,000 runs needs about sixty figures, and matplotlib takes 0.5-2 s per
figure on a 2-core machine; this writes the same kind of line plot in a few milliseconds. Output is
plain SVG markup (no scripts, no external references); every text goes through ``escape``.
"""

from __future__ import annotations

import math
from html import escape as _escape

import numpy as np

FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif"'


def esc(s) -> str:
    return _escape(str(s), quote=True)


def _f(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for i in range(first, first + 50):
        v = i * step
        if v > hi + step * 1e-9:
            break
        ticks.append(float(f"{v:.12g}"))
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades inside [lo, hi] (thinned when many); 1-2-5 steps when fewer than three decades show."""
    a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    decades = [10.0**k for k in range(a, b + 1)]
    inside = [d for d in decades if lo * 0.999 <= d <= hi * 1.001]
    if len(inside) >= 3:
        step = max(1, len(inside) // 7 + 1) if len(inside) > 7 else 1
        return inside[::step]
    out = [m * d for d in decades for m in (1, 2, 5) if lo * 0.999 <= m * d <= hi * 1.001]
    return out or [lo, hi]


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
    return f"{v:.6g}"


class Axes:
    """One panel. Add series, then ``render`` (limits come from the data unless fixed)."""

    def __init__(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        xlabel: str = "",
        ylabel: str = "",
        xlog: bool = False,
        ylog: bool = False,
        xlim=None,
        ylim=None,
        title: str = "",
    ):
        self.x, self.y, self.w, self.h = x, y, w, h
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title
        self.xlog, self.ylog, self.xlim, self.ylim = xlog, ylog, xlim, ylim
        self.xpad = 0.0  # share of the x range added on each side (points at the edge stay whole)
        self.font = 12
        self.items: list[tuple] = []

    def _clean(self, xs, ys):
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if self.xlog:
            ok &= xs > 0
        if self.ylog:
            ok &= ys > 0
        return xs[ok], ys[ok]

    def line(self, xs, ys, color: str, dash: bool = False, width: float = 1.6, opacity: float = 1.0, attrs: str = ""):
        """A polyline; ``attrs``: extra attributes, already escaped (``data-opt="..."``)."""
        self.items.append(("line", *self._clean(xs, ys), color, dash, width, opacity, attrs))

    def step(self, xs, ys, color: str, dash: bool = False, width: float = 1.6, attrs: str = ""):
        self.items.append(("step", *self._clean(xs, ys), color, dash, width, 1.0, attrs))

    def segments(self, x0, x1, ys, color: str, dash: bool = False, width: float = 2.0, attrs: str = ""):
        """Horizontal segments from x0 to x1 at ys (a binned envelope)."""
        x0, x1, ys = (np.asarray(v, dtype=float) for v in (x0, x1, ys))
        ok = np.isfinite(x0) & np.isfinite(x1) & np.isfinite(ys)
        self.items.append(("segments", x0[ok], x1[ok], ys[ok], color, dash, width, attrs))

    def band(self, xs, lo, hi, color: str, opacity: float = 0.15, attrs: str = ""):
        xs, lo, hi = (np.asarray(v, dtype=float) for v in (xs, lo, hi))
        ok = np.isfinite(xs) & np.isfinite(lo) & np.isfinite(hi)
        if self.ylog:
            ok &= (lo > 0) & (hi > 0)
        self.items.append(("band", xs[ok], lo[ok], hi[ok], color, opacity, attrs))

    def scatter(
        self,
        xs,
        ys,
        color: str,
        marker: str = "o",
        size: float = 3.0,
        opacity: float = 0.8,
        attrs: str = "",
        hollow: bool = False,
    ):
        self.items.append(("scatter", *self._clean(xs, ys), color, marker, size, opacity, attrs, hollow))

    def vline(self, x: float, color: str, label: str = "", attrs: str = ""):
        """A dashed vertical marker (where a run diverged) with a label at its top."""
        self.items.append(("vline", np.asarray([x], dtype=float), color, label, attrs))

    def edge_marks(self, xs, color: str, attrs: str = ""):
        """× marks on the bottom edge at the given x (values with no y, e.g. failed configurations)."""
        xs = np.asarray(xs, dtype=float)
        self.items.append(("edge", xs[np.isfinite(xs) & ((xs > 0) if self.xlog else True)], color, attrs))

    def has_data(self) -> bool:
        return any(len(i[1]) for i in self.items)

    def _limits(self):
        xs = [i[1] for i in self.items if len(i[1])] + [i[2] for i in self.items if i[0] == "segments" and len(i[2])]
        ys = [
            i[3] if i[0] == "segments" else v
            for i in self.items
            if i[0] not in ("edge", "vline") and len(i[1])
            for v in (i[2], i[3] if i[0] == "band" else i[2])
        ]
        x = np.concatenate(xs) if xs else np.array([0.0, 1.0])
        y = np.concatenate(ys) if ys else np.array([0.0, 1.0])
        ypad = 0.12 if any(i[0] == "edge" and len(i[1]) for i in self.items) else 0.05  # room for × at the bottom
        return self._pad(x, self.xlim, self.xlog, self.xpad), self._pad(y, self.ylim, self.ylog, ypad)

    @staticmethod
    def _pad(v, fixed, log, frac):
        if fixed is not None:
            return fixed
        lo, hi = float(np.min(v)), float(np.max(v))
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * frac
        lo, hi = lo - pad, hi + pad
        return (10**lo, 10**hi) if log else (lo, hi)

    def render(self) -> str:
        (x0, x1), (y0, y1) = self._limits()
        ax0, ax1 = (math.log10(x0), math.log10(x1)) if self.xlog else (x0, x1)
        ay0, ay1 = (math.log10(y0), math.log10(y1)) if self.ylog else (y0, y1)
        sx = self.w / ((ax1 - ax0) or 1.0)
        sy = self.h / ((ay1 - ay0) or 1.0)
        left, top, right, bottom = self.x, self.y, self.x + self.w, self.y + self.h

        def X(v):  # arrays to plain lists of pixel positions
            v = np.asarray(v, dtype=float)
            return (left + ((np.log10(v) if self.xlog else v) - ax0) * sx).tolist()

        def Y(v):
            v = np.asarray(v, dtype=float)
            return (bottom - ((np.log10(v) if self.ylog else v) - ay0) * sy).tolist()

        def x1_(v):
            return left + ((math.log10(v) if self.xlog else v) - ax0) * sx

        def y1_(v):
            return bottom - ((math.log10(v) if self.ylog else v) - ay0) * sy

        out = [f'<g {FONT} font-size="{self.font}">']
        xt = [(v, x1_(v)) for v in (log_ticks(x0, x1) if self.xlog else nice_ticks(x0, x1))]
        yt = [(v, y1_(v)) for v in (log_ticks(y0, y1) if self.ylog else nice_ticks(y0, y1))]
        xt = [(v, p) for v, p in xt if left - 0.5 <= p <= right + 0.5]
        yt = [(v, p) for v, p in yt if top - 0.5 <= p <= bottom + 0.5]
        grid = "".join(f"M{_f(p)} {_f(top)}V{_f(bottom)}" for _, p in xt) + "".join(
            f"M{_f(left)} {_f(p)}H{_f(right)}" for _, p in yt
        )
        out.append(f'<path d="{grid}" stroke="#e3e6eb" fill="none"/>')
        out.append(
            '<g fill="#444" text-anchor="middle">'
            + "".join(f'<text x="{_f(p)}" y="{_f(bottom + 14)}">{esc(tick_label(v))}</text>' for v, p in xt)
            + "</g>"
        )
        out.append(
            '<g fill="#444" text-anchor="end">'
            + "".join(f'<text x="{_f(left - 5)}" y="{_f(p + 4)}">{esc(tick_label(v))}</text>' for v, p in yt)
            + "</g>"
        )
        out.append(
            f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(self.w)}" height="{_f(self.h)}" '
            f'fill="none" stroke="#9aa3af"/>'
        )
        out.append(
            f'<svg x="{_f(left)}" y="{_f(top)}" width="{_f(self.w)}" height="{_f(self.h)}" '
            f'viewBox="{_f(left)} {_f(top)} {_f(self.w)} {_f(self.h)}" overflow="hidden">'
        )
        for item in self.items:
            if item[0] == "band" and len(item[1]):
                xs, lo, hi, color, opacity, attrs = item[1:]
                pts = _points(X(xs) + X(xs[::-1]), Y(hi) + Y(lo[::-1]))
                out.append(
                    f'<polygon points="{pts}" fill="{esc(color)}" fill-opacity="{opacity}" stroke="none"'
                    f"{_attrs(attrs)}/>"
                )
        for item in self.items:
            kind = item[0]
            if kind in ("line", "step") and len(item[1]):
                xs, ys, color, dash, width, opacity, attrs = item[1:]
                px, py = X(xs), Y(ys)
                if kind == "step":  # horizontal then vertical, like drawstyle steps-post
                    px, py = [v for v in px for _ in (0, 1)][1:], [v for v in py for _ in (0, 1)][:-1]
                d = ' stroke-dasharray="5 3"' if dash else ""
                op = f' stroke-opacity="{opacity}"' if opacity != 1 else ""
                out.append(
                    f'<polyline points="{_points(px, py)}" fill="none" stroke="{esc(color)}" '
                    f'stroke-width="{width}"{op} stroke-linejoin="round"{d}{_attrs(attrs)}/>'
                )
            elif kind == "segments" and len(item[1]):
                x0_, x1b, ys, color, dash, width, attrs = item[1:]
                d = ' stroke-dasharray="5 3"' if dash else ""
                path = "".join(f"M{_f(a)},{_f(y)}H{_f(b)}" for a, b, y in zip(X(x0_), X(x1b), Y(ys)))
                out.append(
                    f'<path d="{path}" fill="none" stroke="{esc(color)}" stroke-width="{width}"{d}{_attrs(attrs)}/>'
                )
            elif kind == "scatter" and len(item[1]):
                xs, ys, color, marker, size, opacity, attrs, hollow = item[1:]
                marks = "".join(_marker(a, b, marker, size, color, opacity, hollow) for a, b in zip(X(xs), Y(ys)))
                out.append(f"<g{_attrs(attrs)}>{marks}</g>")
        out.append("</svg>")
        for item in self.items:
            if item[0] == "edge" and len(item[1]):
                marks = "".join(_marker(a, bottom - 6, "x", 4, item[2], 1.0) for a in X(item[1]))
                out.append(f"<g{_attrs(item[3])}>{marks}</g>")
            elif item[0] == "vline" and len(item[1]):
                px = X(item[1])[0]
                if left - 0.5 <= px <= right + 0.5:
                    out.append(
                        f'<line x1="{_f(px)}" y1="{_f(top)}" x2="{_f(px)}" y2="{_f(bottom)}" '
                        f'stroke="{esc(item[2])}" stroke-width="1.5" stroke-dasharray="4 3"{_attrs(item[4])}/>'
                    )
                    if item[3]:
                        anchor = "end" if px > left + self.w * 0.6 else "start"
                        dx = -4 if anchor == "end" else 4
                        out.append(
                            f'<text x="{_f(px + dx)}" y="{_f(top + 13)}" text-anchor="{anchor}" '
                            f'fill="{esc(item[2])}">{esc(item[3])}</text>'
                        )
        if self.xlabel:
            out.append(
                f'<text x="{_f(left + self.w / 2)}" y="{_f(bottom + 31)}" text-anchor="middle" '
                f'fill="#222">{esc(self.xlabel)}</text>'
            )
        if self.ylabel:
            cx, cy = left - 44, top + self.h / 2
            out.append(
                f'<text x="{_f(cx)}" y="{_f(cy)}" text-anchor="middle" fill="#222" '
                f'transform="rotate(-90 {_f(cx)} {_f(cy)})">{esc(self.ylabel)}</text>'
            )
        if self.title:
            out.append(f'<text x="{_f(left)}" y="{_f(top - 7)}" fill="#222" font-weight="600">{esc(self.title)}</text>')
        out.append("</g>")
        return "".join(out)


def _points(xs: list, ys: list) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys))


def _attrs(attrs: str) -> str:
    return f" {attrs}" if attrs else ""


def _marker(x: float, y: float, marker: str, size: float, color: str, opacity: float, hollow: bool = False) -> str:
    c = esc(color)
    paint = (
        f'fill="#fff" stroke="{c}" stroke-width="1.4" stroke-opacity="{opacity}"'
        if hollow
        else f'fill="{c}" fill-opacity="{opacity}"'
    )
    if marker == "s":
        return f'<rect x="{_f(x - size)}" y="{_f(y - size)}" width="{_f(2 * size)}" height="{_f(2 * size)}" {paint}/>'
    if marker == "x":
        return (
            f'<path d="M{_f(x - size)},{_f(y - size)}L{_f(x + size)},{_f(y + size)}M{_f(x - size)},{_f(y + size)}'
            f'L{_f(x + size)},{_f(y - size)}" stroke="{c}" stroke-width="1.6"/>'
        )
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(size)}" {paint}/>'


class Figure:
    """A fixed-size canvas of panels, optional raw SVG parts and a legend; ``svg()`` returns the markup."""

    def __init__(self, width: float, height: float, title: str = "", font: float = 12):
        self.width, self.height, self.title, self.font = width, height, title, font
        self.axes: list[Axes] = []
        self.parts: list[str] = []  # raw markup drawn after the panels (already escaped)
        self.legend_entries: list[tuple[str, dict]] = []
        self.legend_at: tuple[float, float, int] | None = None
        self.legend_note = ""

    def add(self, axes: Axes) -> Axes:
        axes.font = self.font
        self.axes.append(axes)
        return axes

    def legend(self, entries: list[tuple[str, dict]], x: float, y: float, columns: int = 1, note: str = ""):
        """``entries``: (label, style) with style keys color, dash, marker, hollow and optional ``attrs``;
        ``note``: a line under the entries (what the styles mean)."""
        self.legend_entries, self.legend_at, self.legend_note = entries, (x, y, columns), note

    def legend_height(self, n: int, columns: int) -> float:
        return 16 * math.ceil(n / max(columns, 1)) + 34  # room for a note of two lines

    def svg(self, cls: str = "plot", attrs: str = "") -> str:
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width:.0f} {self.height:.0f}" '
            f'class="{esc(cls)}" role="img"'
            + (f' aria-label="{esc(self.title)}"' if self.title else "")
            + _attrs(attrs)
            + ">"
        ]
        if self.title:
            parts.append(f"<title>{esc(self.title)}</title>")
        parts += [a.render() for a in self.axes]
        parts += self.parts
        if self.legend_entries and self.legend_at:
            x, y, columns = self.legend_at
            col_w = (self.width - x - 10) / max(columns, 1)
            parts.append(f'<g {FONT} font-size="{self.font}" class="legend">')
            for i, (label, st) in enumerate(self.legend_entries):
                lx, ly = x + (i % columns) * col_w, y + (i // columns) * 16
                d = ' stroke-dasharray="5 3"' if st.get("dash") else ""
                parts.append(f"<g{_attrs(st.get('attrs', ''))}>")
                parts.append(
                    f'<line x1="{_f(lx)}" y1="{_f(ly)}" x2="{_f(lx + 24)}" y2="{_f(ly)}" '
                    f'stroke="{esc(st["color"])}" stroke-width="2.2"{d}/>'
                )
                if st.get("marker"):
                    parts.append(_marker(lx + 12, ly, st["marker"], 3, st["color"], 1.0, st.get("hollow", False)))
                parts.append(f'<text x="{_f(lx + 30)}" y="{_f(ly + 4)}" fill="#222">{esc(label)}</text></g>')
            if self.legend_note:  # a line per " | "-separated part
                rows = math.ceil(len(self.legend_entries) / max(columns, 1))
                for k, line in enumerate(self.legend_note.split(" | ")):
                    parts.append(
                        f'<text x="{_f(x)}" y="{_f(y + 16 * rows + 6 + 14 * k)}" fill="#555" '
                        f'font-size="{self.font - 1}">{esc(line)}</text>'
                    )
            parts.append("</g>")
        parts.append("</svg>")
        return "".join(parts)
