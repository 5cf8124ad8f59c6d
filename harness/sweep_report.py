"""The results table a sweep prints from its manifest: trials best first, the selection and its seeds."""

from __future__ import annotations

import math

import numpy as np


def fmt(v) -> str:
    """A value in the table: floats to 3 significant digits, NaN as nan."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def report(m: dict) -> str:
    """The results table of a manifest: trials best first, the selection and the seeds."""
    metric = m["selection"]["metric"]
    keys = sorted({k for t in m["trials"] for k in t["hparams"]})
    header = ["", "rank", "stage", "trial", "run_id", *keys, f"val {metric}", "status"]
    sel = (m["selected"] or {}).get("run_id")
    rows = [
        [
            "*" if t["run_id"] == sel else "",
            str(t["rank"]),
            str(t["stage"]),
            str(t["trial"]),
            t["run_id"],
            *(fmt(t["hparams"].get(k, "")) for k in keys),
            fmt(t["val"] if t["val"] is not None else math.nan),
            t["status"],
        ]
        for t in sorted(m["trials"], key=lambda t: t["rank"])
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"trials ({m['budget']['trials']} in {m['budget']['stages']} stage(s); selection on final val "
        f"{metric}, {'higher' if m['selection']['higher_is_better'] else 'lower'} is better):"
    ]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    if m["selected"] is None:
        lines.append("selected: none (no trial finished ok with a finite validation metric)")
        return "\n".join(lines)
    s = m["selected"]
    lines.append(
        f"selected: run {s['run_id']} (stage {s['stage']} trial {s['trial']}), val {metric} "
        f"{fmt(s['val'])}: " + " ".join(f"{k}={fmt(v)}" for k, v in s["hparams"].items())
    )
    if m["seeds"]:
        lines.append(f"seeds of the selected config (run seed: val / test {metric}):")
        for r in m["seeds"]:
            lines.append(
                f"  seed {r['seed']}  run {r['run_id']}  {r['status']:<8} val "
                f"{fmt(r['val'] if r['val'] is not None else math.nan)}  test "
                f"{fmt(r['test'] if r['test'] is not None else math.nan)}"
            )
        vals = [r["val"] for r in m["seeds"] if r["val"] is not None]
        tests = [r["test"] for r in m["seeds"] if r["test"] is not None]
        if len(vals) > 1:
            lines.append(
                f"  mean +- sd over {len(vals)} seeds: val {np.mean(vals):.4g} +- {np.std(vals, ddof=1):.2g}"
                + (f", test {np.mean(tests):.4g} +- {np.std(tests, ddof=1):.2g}" if len(tests) > 1 else "")
            )
    return "\n".join(lines)
