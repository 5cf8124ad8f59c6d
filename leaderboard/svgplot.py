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
    return f"{v:.1f}"


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
    decades = [10.0 ** k for k in range(a, b + 1)]
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

    def __init__(self, x: float, y: float, w: float, h: float, xlabel: str = "", ylabel: str = "",
                 xlog: bool = False, ylog: bool = False, xlim=None, ylim=None, title: str = ""):
        self.x, self.y, self.w, self.h = x, y, w, h
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title
        self.xlog, self.ylog, self.xlim, self.ylim = xlog, ylog, xlim, ylim
        self.items: list[tuple] = []

    def _clean(self, xs, ys):
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if self.xlog:
            ok &= xs > 0
        if self.ylog:
            ok &= ys > 0
        return xs[ok], ys[ok]

    def line(self, xs, ys, color: str, dash: bool = False, width: float = 1.6, opacity: float = 1.0):
        self.items.append(("line", *self._clean(xs, ys), color, dash, width, opacity))

    def step(self, xs, ys, color: str, dash: bool = False, width: float = 1.6):
        self.items.append(("step", *self._clean(xs, ys), color, dash, width, 1.0))

    def band(self, xs, lo, hi, color: str, opacity: float = 0.15):
        xs, lo, hi = (np.asarray(v, dtype=float) for v in (xs, lo, hi))
        ok = np.isfinite(xs) & np.isfinite(lo) & np.isfinite(hi)
        if self.ylog:
            ok &= (lo > 0) & (hi > 0)
        self.items.append(("band", xs[ok], lo[ok], hi[ok], color, opacity))

    def scatter(self, xs, ys, color: str, marker: str = "o", size: float = 3.0, opacity: float = 0.8):
        self.items.append(("scatter", *self._clean(xs, ys), color, marker, size, opacity))

    def edge_marks(self, xs, color: str):
        """× marks on the bottom edge at the given x (values with no y, e.g. failed configurations)."""
        xs = np.asarray(xs, dtype=float)
        self.items.append(("edge", xs[np.isfinite(xs) & ((xs > 0) if self.xlog else True)], color))

    def has_data(self) -> bool:
        return any(len(i[1]) for i in self.items)

    def _limits(self):
        xs = [i[1] for i in self.items if len(i[1])]
        ys = [v for i in self.items if i[0] != "edge" and len(i[1]) for v in (i[2], i[3] if i[0] == "band" else i[2])]
        x = np.concatenate(xs) if xs else np.array([0.0, 1.0])
        y = np.concatenate(ys) if ys else np.array([0.0, 1.0])
        return self._pad(x, self.xlim, self.xlog, 0.0), self._pad(y, self.ylim, self.ylog, 0.05)

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
        return (10 ** lo, 10 ** hi) if log else (lo, hi)

    def render(self) -> str:
        (x0, x1), (y0, y1) = self._limits()
        ax0, ax1 = (math.log10(x0), math.log10(x1)) if self.xlog else (x0, x1)
        ay0, ay1 = (math.log10(y0), math.log10(y1)) if self.ylog else (y0, y1)
        sx = self.w / ((ax1 - ax0) or 1.0)
        sy = self.h / ((ay1 - ay0) or 1.0)

        def X(v):
            v = np.asarray(v, dtype=float)
            return self.x + ((np.log10(v) if self.xlog else v) - ax0) * sx

        def Y(v):
            v = np.asarray(v, dtype=float)
            return self.y + self.h - ((np.log10(v) if self.ylog else v) - ay0) * sy

        out = [f'<g {FONT} font-size="11">']
        xt = log_ticks(x0, x1) if self.xlog else nice_ticks(x0, x1)
        yt = log_ticks(y0, y1) if self.ylog else nice_ticks(y0, y1)
        for v in xt:
            px = float(X(v))
            if self.x - 0.5 <= px <= self.x + self.w + 0.5:
                out.append(f'<line x1="{_f(px)}" y1="{_f(self.y)}" x2="{_f(px)}" y2="{_f(self.y + self.h)}" '
                           f'stroke="#e3e6eb" stroke-width="1"/>')
                out.append(f'<text x="{_f(px)}" y="{_f(self.y + self.h + 14)}" text-anchor="middle" '
                           f'fill="#444">{esc(tick_label(v))}</text>')
        for v in yt:
            py = float(Y(v))
            if self.y - 0.5 <= py <= self.y + self.h + 0.5:
                out.append(f'<line x1="{_f(self.x)}" y1="{_f(py)}" x2="{_f(self.x + self.w)}" y2="{_f(py)}" '
                           f'stroke="#e3e6eb" stroke-width="1"/>')
                out.append(f'<text x="{_f(self.x - 5)}" y="{_f(py + 4)}" text-anchor="end" '
                           f'fill="#444">{esc(tick_label(v))}</text>')
        out.append(f'<rect x="{_f(self.x)}" y="{_f(self.y)}" width="{_f(self.w)}" height="{_f(self.h)}" '
                   f'fill="none" stroke="#9aa3af" stroke-width="1"/>')
        clip = f'<svg x="{_f(self.x)}" y="{_f(self.y)}" width="{_f(self.w)}" height="{_f(self.h)}" ' \
               f'viewBox="{_f(self.x)} {_f(self.y)} {_f(self.w)} {_f(self.h)}" overflow="hidden">'
        out.append(clip)
        for item in self.items:
            kind = item[0]
            if kind == "band" and len(item[1]):
                xs, lo, hi, color, opacity = item[1:]
                pts = list(zip(X(xs), Y(hi))) + list(zip(X(xs[::-1]), Y(lo[::-1])))
                out.append(f'<polygon points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in pts)}" fill="{esc(color)}" '
                           f'fill-opacity="{opacity}" stroke="none"/>')
        for item in self.items:
            kind = item[0]
            if kind in ("line", "step") and len(item[1]):
                xs, ys, color, dash, width, opacity = item[1:]
                px, py = X(xs), Y(ys)
                if kind == "step":  # horizontal then vertical, like drawstyle steps-post
                    px2 = np.repeat(px, 2)[1:]
                    py2 = np.repeat(py, 2)[:-1]
                    px, py = px2, py2
                pts = " ".join(f"{_f(a)},{_f(b)}" for a, b in zip(px, py))
                d = ' stroke-dasharray="5 3"' if dash else ""
                out.append(f'<polyline points="{pts}" fill="none" stroke="{esc(color)}" stroke-width="{width}"'
                           f' stroke-opacity="{opacity}" stroke-linejoin="round"{d}/>')
            elif kind == "scatter" and len(item[1]):
                xs, ys, color, marker, size, opacity = item[1:]
                for a, b in zip(X(xs), Y(ys)):
                    out.append(_marker(float(a), float(b), marker, size, color, opacity))
        out.append("</svg>")
        for item in self.items:
            if item[0] == "edge":
                for a in X(item[1]):
                    out.append(_marker(float(a), self.y + self.h, "x", 4, item[2], 1.0))
        if self.xlabel:
            out.append(f'<text x="{_f(self.x + self.w / 2)}" y="{_f(self.y + self.h + 31)}" text-anchor="middle" '
                       f'fill="#222">{esc(self.xlabel)}</text>')
        if self.ylabel:
            cx, cy = self.x - 44, self.y + self.h / 2
            out.append(f'<text x="{_f(cx)}" y="{_f(cy)}" text-anchor="middle" fill="#222" '
                       f'transform="rotate(-90 {_f(cx)} {_f(cy)})">{esc(self.ylabel)}</text>')
        if self.title:
            out.append(f'<text x="{_f(self.x)}" y="{_f(self.y - 7)}" fill="#222" font-weight="600">'
                       f'{esc(self.title)}</text>')
        out.append("</g>")
        return "".join(out)


def _marker(x: float, y: float, marker: str, size: float, color: str, opacity: float) -> str:
    c = esc(color)
    if marker == "s":
        return (f'<rect x="{_f(x - size)}" y="{_f(y - size)}" width="{_f(2 * size)}" height="{_f(2 * size)}" '
                f'fill="{c}" fill-opacity="{opacity}"/>')
    if marker == "x":
        return (f'<path d="M{_f(x - size)},{_f(y - size)}L{_f(x + size)},{_f(y + size)}M{_f(x - size)},{_f(y + size)}'
                f'L{_f(x + size)},{_f(y - size)}" stroke="{c}" stroke-width="1.6"/>')
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(size)}" fill="{c}" fill-opacity="{opacity}"/>'


class Figure:
    """A fixed-size canvas of panels plus an optional legend; ``svg()`` returns the markup."""

    def __init__(self, width: float, height: float, title: str = ""):
        self.width, self.height, self.title = width, height, title
        self.axes: list[Axes] = []
        self.legend_entries: list[tuple[str, dict]] = []
        self.legend_at: tuple[float, float, int] | None = None

    def add(self, axes: Axes) -> Axes:
        self.axes.append(axes)
        return axes

    def legend(self, entries: list[tuple[str, dict]], x: float, y: float, columns: int = 1):
        """``entries``: (label, style) with style keys color, dash, marker."""
        self.legend_entries, self.legend_at = entries, (x, y, columns)

    def svg(self, cls: str = "plot") -> str:
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width:.0f} {self.height:.0f}" '
                 f'class="{esc(cls)}" role="img"'
                 + (f' aria-label="{esc(self.title)}"' if self.title else "") + ">"]
        if self.title:
            parts.append(f"<title>{esc(self.title)}</title>")
        parts += [a.render() for a in self.axes]
        if self.legend_entries and self.legend_at:
            x, y, columns = self.legend_at
            col_w = max(70.0, 8 + 6.6 * max(len(str(label)) for label, _ in self.legend_entries) + 30)
            parts.append(f'<g {FONT} font-size="11">')
            for i, (label, st) in enumerate(self.legend_entries):
                lx, ly = x + (i % columns) * col_w, y + (i // columns) * 16
                d = ' stroke-dasharray="5 3"' if st.get("dash") else ""
                parts.append(f'<line x1="{_f(lx)}" y1="{_f(ly)}" x2="{_f(lx + 22)}" y2="{_f(ly)}" '
                             f'stroke="{esc(st["color"])}" stroke-width="2"{d}/>')
                if st.get("marker"):
                    parts.append(_marker(lx + 11, ly, st["marker"], 2.6, st["color"], 1.0))
                parts.append(f'<text x="{_f(lx + 27)}" y="{_f(ly + 4)}" fill="#222">{esc(label)}</text>')
            parts.append("</g>")
        parts.append("</svg>")
        return "".join(parts)
