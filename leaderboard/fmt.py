"""Display formatting for the site: every value shown on a page goes through one of these.

Numbers become short strings (``num``, ``signed``, ``seconds``, ``nbytes``), table cells carry a sort value
beside their text (``Cell``), and names taken from the results become safe file names (``safe_name``).
"""
from __future__ import annotations

import hashlib
import math
import os
import re

import pandas as pd

TIER_INFO = {
    "full": ("tier-full", "Full tier", "the published protocol (GPU)"),
    "quick": ("tier-quick", "Quick tier", "minutes-scale runs, often on CPU; never mixed with full-tier numbers"),
    "smoke": ("tier-smoke", "Smoke tier", "pipeline test only; ranks nothing"),
}
# significance of a row against the best row: (text, CSS class)
SIG_TEXT = {"best": ("best", "sig-best"), "tied": ("≈ best", "sig-tied"), "worse": ("worse", "sig-worse"),
            "n/a": ("n/a", "sig-na")}


def missing(v) -> bool:
    """None, pandas NA or NaN (text is not missing)."""
    if v is None or v is pd.NA:
        return True
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def num(v, digits: int = 4) -> str:
    if missing(v):
        return "–"
    v = float(v)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def signed(v, digits: int = 3) -> str:
    if missing(v):
        return "–"
    v = float(v)
    return ("+" if v > 0 else "−" if v < 0 else "±") + f"{abs(v):.{digits}g}"


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
    return f"{v / 60:.3g} min"


def nbytes(v) -> str:
    if missing(v):
        return "–"
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1024
    return "–"


def ratio(v) -> str:
    """A step-time ratio such as ``1.05×``."""
    return f"{num(v, 3)}×" if not missing(v) else "–"


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

    __slots__ = ("t", "v", "c", "h", "s", "ti", "sc", "rf")

    def __init__(self, t, v=None, c="", h="", s="", ti="", sc="", rf=False):
        self.t, self.v, self.c, self.h, self.s, self.ti, self.sc, self.rf = t, v, c, h, s, ti, sc, rf


class Col:
    """One column header: text, title (hover help) and whether it holds numbers."""

    __slots__ = ("t", "ti", "num")

    def __init__(self, t, ti="", num_=False):
        self.t, self.ti, self.num = t, ti, num_


cell, col = Cell, Col


def ci_cell(mean, half, n, href="") -> Cell:
    """A mean with its 95 % half-width and seed count."""
    if missing(mean):
        return cell("–", "", "num")
    return cell(num(mean), sort_value(mean), "num", href, s=(f"± {num(half, 2)}" if not missing(half) else "")
                + f" n={int(n)}", sc="ci")


def safe_name(name: str) -> str:
    """A file name derived from data that cannot escape its folder or collide by case tricks."""
    name = str(name)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name) and ".." not in name:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:60] or "x"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def task_slug(tier: str, task: str) -> str:
    return safe_name(f"{task}--{tier}")


def task_href(tier: str, task: str) -> str:
    """The task page, relative to the site root."""
    return f"tasks/{task_slug(tier, task)}.html"


def run_page(rid: str) -> str:
    return f"runs/{safe_name(rid)}.html"


def tier_view(tier: str) -> dict:
    cls, title, desc = TIER_INFO.get(tier, ("tier-other", f"Tier {tier}", "an unknown tier"))
    return {"name": str(tier), "cls": cls, "title": title, "desc": desc}


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root`` (paths come from walking ``root``, so a prefix cut is enough)."""
    prefix = root.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
