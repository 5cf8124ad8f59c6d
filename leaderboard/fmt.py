"""Display formatting for the site: every value shown on a page goes through one of these.

Numbers become short strings (``num``, ``signed``, ``seconds``, ``nbytes``), a mean is rounded to the
precision its interval supports (``ci_text``: the half-width to two significant digits, the mean to the same
decimal place), table cells carry a sort value beside their text (``Cell``), and names taken from the results
become safe file names and anchors (``safe_name``, ``anchor``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re

import pandas as pd

from rootbench.harness.search import WARM_START_LIMIT

TIER_INFO = {
    "full": ("tier-full", "Full tier", "the published protocol (GPU)"),
    "long": (
        "tier-long",
        "Long tier",
        "runs long enough for the paper's claims (<= 10 min on a 2-core CPU, seconds on a GPU)",
    ),
    "quick": ("tier-quick", "Quick tier", "minutes-scale runs, often on CPU; never mixed with full-tier numbers"),
    "smoke": ("tier-smoke", "Smoke tier", "pipeline test only; ranks nothing"),
}
# significance of a row against the best row: (text, CSS class)
SIG_TEXT = {
    "best": ("best", "sig-best"),
    "tied": ("≈ best", "sig-tied"),
    "worse": ("worse", "sig-worse"),
    "n/a": ("n/a", "sig-na"),
}


def missing(v) -> bool:
    """None, pandas NA or NaN (text is not missing)."""
    if v is None or v is pd.NA:
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def num(v, digits: int = 4) -> str:
    """``digits`` significant digits; whole numbers too large for them in full with thousands separators."""
    if missing(v):
        return "–"
    v = float(v)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if abs(v) >= 10**digits and abs(v) < 1e15:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def signed(v, digits: int = 3) -> str:
    if missing(v):
        return "–"
    v = float(v)
    return ("+" if v > 0 else "−" if v < 0 else "±") + num(abs(v), digits)


def decimals_for(half) -> int | None:
    """Decimal places that show ``half`` (a CI half-width) to two significant digits; None without one."""
    if missing(half) or not math.isfinite(float(half)) or float(half) <= 0:
        return None
    return max(0, min(8, 1 - math.floor(math.log10(float(half)))))


def fixed(v, decimals: int, sign: bool = False) -> str:
    if missing(v):
        return "–"
    v = float(v)
    text = f"{abs(v):,.{decimals}f}" if abs(v) >= 1e4 else f"{abs(v):.{decimals}f}"
    zero = float(text.replace(",", "")) == 0
    if sign:
        return ("±" if zero else "+" if v > 0 else "−") + text
    return ("−" if v < 0 and not zero else "") + text


def ci_text(mean, half, sign: bool = False) -> tuple[str, str]:
    """(mean, "± half") rounded together: the half-width to two significant digits and the mean to the same
    decimal place (``0.5685 ± 0.0142`` reads ``0.569 ± 0.014``). Without an interval, four significant digits."""
    if missing(mean):
        return "–", ""
    d = decimals_for(half)
    if d is None:
        if not missing(half) and float(half) == 0:
            return (signed(mean, 4) if sign else num(mean)), "± 0"
        return (signed(mean, 4) if sign else num(mean)), ""
    return fixed(mean, d, sign), f"± {fixed(half, d)}"


def seconds(v) -> str:
    if missing(v):
        return "–"
    v = float(v)
    if math.isinf(v):
        return "∞"
    if v == 0:
        return "0 s"
    if v < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if v < 1:
        return f"{v * 1e3:.3g} ms"
    if v < 600:
        return f"{v:.3g} s"
    if v < 7200:
        return f"{v / 60:.3g} min"
    return f"{v / 3600:.3g} h"


def nbytes(v) -> str:
    """Binary units, switching at 1000 so that a value never prints as ``1.02e+03 KiB``."""
    if missing(v):
        return "–"
    v = float(v)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    for i, unit in enumerate(units):
        if abs(v) < 1000 or i == len(units) - 1:
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1024
    return "–"


def ratio(v) -> str:
    """A step-time ratio such as ``1.05×``."""
    return f"{num(v, 3)}×" if not missing(v) else "–"


def diverged_text(step) -> str:
    """What a diverged run shows instead of a final value."""
    return f"diverged at step {int(step):,}" if not missing(step) else "diverged"


def sort_value(v):
    """The ``data-v`` attribute: numbers (inf as a huge number), '' for missing."""
    if missing(v):
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isinf(f):
        return "1e308" if f > 0 else "-1e308"
    return repr(f)


def text(v) -> str:
    return "–" if missing(v) else str(v)


def status_text(counts: dict) -> str:
    return " · ".join(f"{n} {k}" for k, n in counts.items()) if counts else "–"


class Cell:
    """One table cell for the templates: text, sort value, class, link, secondary text, title.

    Attributes (not dict keys): Jinja's attribute lookup on a dict tries getattr first, which costs
    more than the rest of the cell at 10,000-run scale."""

    __slots__ = ("t", "v", "c", "h", "s", "ti", "sc", "rf", "ls", "k", "g")

    def __init__(self, t, v=None, c="", h="", s="", ti="", sc="", rf=False, ls=(), k="", g=()):
        self.t, self.v, self.c, self.h, self.s, self.ti, self.sc, self.rf = t, v, c, h, s, ti, sc, rf
        self.ls = ls  # more links after the text: (text, href, class, title) each
        self.k = k  # "check": a checkbox whose data-cfg is ``t`` (choose a configuration's curve)
        self.g = g  # a caveat badge after the text: (text, title), e.g. warm_start_tag's "≈ SGD"


class Col:
    """One column header: text, title (hover help), whether it holds numbers, and whether it is optional
    (hidden until chosen in the table's column chooser)."""

    __slots__ = ("t", "ti", "num", "opt")

    def __init__(self, t, ti="", num_=False, opt=False):
        self.t, self.ti, self.num, self.opt = t, ti, num_, opt


cell, col = Cell, Col


def ci_cell(mean, half, n, href="", g=()) -> Cell:
    """A mean with its 95 % half-width and seed count, rounded to what the interval supports."""
    if missing(mean):
        return cell("–", "", "num")
    m, h = ci_text(mean, half)
    return cell(m, sort_value(mean), "num", href, s=f"{h} n={int(n)}".strip(), sc="ci", g=g)


def frozen_tag(counts, precision: str) -> tuple:
    """The "state frozen" badge when any of a precision's reruns recorded ``state_frozen`` (``counts``:
    [frozen, runs]), else (): an EMA factor rounded to 1 in that state dtype, so that state never moved."""
    if not isinstance(counts, (list, tuple)) or not counts[0]:
        return ()
    return (
        "state frozen",
        f"{counts[0]} of {counts[1]} {precision} runs: an EMA factor rounds to 1 in the state dtype, so that "
        "state never decays; this change measures the method with a frozen state",
    )


def eval_mode_tag(declared) -> tuple:
    """The "averaged weights" badge for an optimizer that declares ``eval_mode``, else (): its evaluations use
    the weights its ``eval()`` swaps in (schedule-free's average), not the iterate it trains."""
    if declared is not True:
        return ()
    return (
        "averaged weights",
        "declares eval_mode: every evaluation uses the weights its eval() swaps in (schedule-free's average), "
        "as its authors report it; 'rootbench eval-weights' shows the training iterate next to them",
    )


def warm_start_tag(share) -> tuple:
    """The "≈ SGD" badge for a final warm-start share above the sweeps' limit, else (): such a run's
    preconditioner is still mostly its initial value, so it measured heavy-ball SGD, not the method."""
    if missing(share) or share <= WARM_START_LIMIT:
        return ()
    return (
        "≈ SGD",
        f"final warm-start share {num(share, 2)} > {WARM_START_LIMIT}: the preconditioner is still mostly its "
        "initial value, so this measured heavy-ball SGD; verdicts do not use it",
    )


def drop_empty(table: dict, keep: int = 2) -> dict:
    """The table without the columns (after the first ``keep``) that are empty in every row: a column of
    dashes (no bf16 runs anywhere, say) says nothing and costs width."""
    cols, rows = table["cols"], table["rows"]
    if not rows:
        return table
    empty = {
        i for i in range(keep, len(cols)) if all(r["cells"][i].t in ("–", "") and not r["cells"][i].s for r in rows)
    }
    if not empty:
        return table
    out = {**table, "cols": [c for i, c in enumerate(cols) if i not in empty]}
    out["rows"] = [{**r, "cells": [x for i, x in enumerate(r["cells"]) if i not in empty]} for r in rows]
    return out


def safe_name(name: str) -> str:
    """A file name derived from data that cannot escape its folder or collide by case tricks."""
    name = str(name)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name) and ".." not in name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:60] or "x"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def anchor(*parts) -> str:
    """An element id (permalink target) made of result strings."""
    return safe_name("--".join(str(p) for p in parts)).replace(".", "_")


def task_slug(tier: str, task: str) -> str:
    return safe_name(f"{task}--{tier}")


def task_href(tier: str, task: str) -> str:
    """The task page, relative to the site root."""
    return f"tasks/{task_slug(tier, task)}.html"


def run_page(rid: str) -> str:
    """A run's own address (a small page that forwards to its section of the configuration's page)."""
    return f"runs/{safe_name(rid)}.html"


def config_page(tier: str, task: str, optimizer: str, config_id: str) -> str:
    """The page of one configuration: every seed of it, one section per run."""
    return f"runs/{safe_name(f'{task}--{optimizer}--{tier}--{config_id}')}.html"


def run_href(tier: str, task: str, optimizer: str, config_id: str, rid: str) -> str:
    """Where a run is shown: its section of the configuration's page."""
    return f"{config_page(tier, task, optimizer, config_id)}#{anchor('run', rid)}"


def tier_view(tier: str) -> dict:
    cls, title, desc = TIER_INFO.get(tier, ("tier-other", f"Tier {tier}", "an unknown tier"))
    return {"name": str(tier), "cls": cls, "title": title, "desc": desc}


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root`` (paths come from walking ``root``, so a prefix cut is enough)."""
    prefix = root.rstrip(os.sep) + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, root)
