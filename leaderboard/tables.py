"""The site's tables as plain data: ``{"id", "cols": [Col], "rows": [{"id", "cls", "cells": [Cell]}]}``.

Each function turns one model table (``leaderboard.model``) into display strings and sort values; the
templates only lay them out. Nothing here computes a statistic. A table shows a compact set of columns; the
rest are optional (``Col.opt``), behind the table's column chooser. Every row has an id (a permalink).
"""

from __future__ import annotations

import pandas as pd

from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard import tiers
from rootbench.leaderboard.fmt import (
    SIG_TEXT,
    anchor,
    cell,
    ci_cell,
    ci_text,
    col,
    diverged_text,
    drop_empty,
    eval_mode_tag,
    frozen_tag,
    missing,
    nbytes,
    num,
    ratio,
    run_href,
    seconds,
    signed,
    sort_value,
    status_text,
    task_href,
    text,
    warm_start_tag,
)

VERDICT_CLASS = {
    "supported": "v-supported",
    "contradicted": "v-contradicted",
    "not testable": "v-untestable",
    "not decided": "v-untestable",
    "context": "v-context",
}
DIRECTION_CLASS = {
    "root-free better": "d-free",
    "root better": "d-root",
    "not significant": "d-ns",
    "untestable": "d-untestable",
}


def cfg_anchor(optimizer: str, config_id: str) -> str:
    """The configuration's row on its task page (a config id is unique per task and optimizer only)."""
    return anchor("cfg", optimizer, config_id)


def overview_table(rows: list[dict], opt_info: dict, root: str, tier: str, task: str) -> dict:
    """One row per optimizer on one (tier, task): its selected configuration and what it measured."""
    cols = [
        col("#", "rank by the test mean of the selected configuration"),
        col("optimizer"),
        col(
            "test metric",
            "mean ± 95% t-interval over finished seeds (rounded to what the interval supports), n seeds",
            True,
        ),
        col("vs best", "one-sided Welch t-test that the best row is better; ≈ best: p ≥ 0.05"),
        col("selected configuration", "chosen on the validation metric; the full set in the tooltip"),
        col("val", "mean final validation metric (the selection criterion)", True),
        col("steps→target", "median over seeds (miss = ∞); seeds that reached it", True),
        col("step time", "optimizer step time / fused AdamW, same process", True),
        col("configs", "tuning budget: distinct configurations tried", True),
        col("train−test", "final train metric minus final test metric", True, opt=True),
        col("time→target", "train clock, median over seeds (miss = ∞)", True, opt=True),
        col("peak mem", "peak memory above the pre-training baseline", True, opt=True),
        col("state B/param", "optimizer-state bytes per parameter", True, opt=True),
        col("Δ bf16", "test mean in bf16 autocast minus fp32, same setting", True, opt=True),
        col("Δ bf16-pure", "test mean with bf16 params/grads/state minus fp32, same setting", True, opt=True),
        col("diverged", "diverged / runs, per precision, all runs of this optimizer here", opt=True),
        col("runs", "status counts over all runs of this optimizer here", opt=True),
    ]
    out = []
    task_page = f"{root}{task_href(tier, task)}"
    for r in rows:
        info = opt_info.get(r["optimizer"], {})
        title = info.get("description") or ("not registered in this checkout" if not info.get("registered") else "")
        sig_key = r.get("significance") or "n/a"
        sig_t, sig_c = SIG_TEXT.get(sig_key, (sig_key, ""))
        p = r.get("p_vs_best")
        selected = bool(r.get("selected"))
        conf_text = (r.get("config_label") or "defaults") if selected else "no finished run"
        n_reached = r.get("n_reached")
        reach = f"{int(n_reached)}/{len(r.get('run_ids') or [])}" if selected and not missing(n_reached) else ""
        deltas = []
        for precision in ("bf16", "bf16-pure"):
            d, n = r.get(f"delta_{precision}"), r.get(f"n_{precision}")
            deltas.append(
                cell(
                    signed(d),
                    sort_value(d),
                    "num",
                    ti=(f"n = {n[0]} ({precision}) vs {n[1]} (fp32) seeds" if isinstance(n, (list, tuple)) else ""),
                    g=frozen_tag(r.get(f"frozen_{precision}"), precision),
                )
            )
        div = r.get("divergence") or {}
        div_text = " · ".join(f"{k} {v[0]}/{v[1]}" for k, v in div.items() if v[0])
        out.append(
            {
                "id": anchor("ov", tier, task, r["optimizer"]),
                "cls": {"best": "best", "tied": "tied"}.get(sig_key, ""),
                "cells": [
                    cell(num(r.get("rank"), 3), sort_value(r.get("rank")), "num"),
                    cell(
                        r["optimizer"],
                        r["optimizer"],
                        ti=title,
                        rf=bool(info.get("root_free")),
                        g=eval_mode_tag(info.get("eval_mode")),
                    ),
                    ci_cell(
                        r.get("test_mean"),
                        r.get("test_half"),
                        r.get("test_n") or 0,
                        g=warm_start_tag(r.get("warm_start_max")),
                    ),
                    cell(
                        sig_t,
                        None,
                        sig_c,
                        s=f"p={num(p, 2)}" if not missing(p) and sig_key in ("tied", "worse") else "",
                    ),
                    cell(
                        conf_text,
                        None,
                        "cfg-cell",
                        h=f"{task_page}#{cfg_anchor(r['optimizer'], r['config_id'])}" if selected else "",
                        s=(r.get("precision") or "") if selected else "",
                        ti=(r.get("hparams_label") or "") if selected else "",
                    ),
                    cell(num(r.get("val_mean")), sort_value(r.get("val_mean")), "num"),
                    cell(
                        num(r.get("stt"), 6) if selected else "–",
                        sort_value(r.get("stt")) if selected else "",
                        "num",
                        s=reach,
                    ),
                    cell(ratio(r.get("step_ratio")), sort_value(r.get("step_ratio")), "num"),
                    cell(str(int(r.get("n_configs") or 0)), sort_value(r.get("n_configs")), "num"),
                    cell(signed(r.get("gap_mean")), sort_value(r.get("gap_mean")), "num"),
                    cell(
                        seconds(r.get("ttt")) if selected else "–", sort_value(r.get("ttt")) if selected else "", "num"
                    ),
                    cell(nbytes(r.get("peak_mem_bytes")), sort_value(r.get("peak_mem_bytes")), "num"),
                    cell(num(r.get("state_bytes_per_param"), 3), sort_value(r.get("state_bytes_per_param")), "num"),
                    *deltas,
                    cell(div_text or "none"),
                    cell(status_text(r.get("status_counts") or {}), sort_value(r.get("n_runs"))),
                ],
            }
        )
    return drop_empty({"id": anchor("overview", tier, task), "cols": cols, "rows": out})


def configs_table(configs_task: list[dict], seeds: dict, selected: set, root: str, tier: str, task: str) -> dict:
    """Every configuration of one (tier, task), with links to its seeds' run pages and a checkbox that draws its
    validation curve. ``seeds``: (tier, task, optimizer, config id) -> [(run id, seed, status, diverged step)];
    ``selected``: the (optimizer, config id) of each selected configuration."""
    cols = [
        col("show", "draw this configuration's validation curve in the figure above"),
        col("optimizer"),
        col("configuration", "the hyperparameters and task settings that vary; all of them in the tooltip"),
        col("precision"),
        col("seeds", "run pages; ✕: the seed did not finish"),
        col("val", "mean final validation metric over finished seeds", True),
        col("test", "mean ± 95% t-interval over finished seeds", True),
        col("lr", "learning rate", True),
        col("status", "status counts", opt=True),
        col("config id", opt=True),
    ]
    rows = []
    sign = -1.0 if (configs_task and configs_task[0]["higher_is_better"]) else 1.0
    ordered = sorted(
        configs_task,
        key=lambda r: (
            r["optimizer"],
            str(r["precision"]),
            sign * r["val_mean"] if r["val_mean"] == r["val_mean"] else 1e308,
        ),
    )
    for r in ordered:
        links = []
        key = (tier, task, r["optimizer"], r["config_id"])
        for rid, seed, status, step in seeds.get(key, []):
            ok = status == "ok"
            label = f"s{seed}" if ok else f"s{seed} ✕"
            why = "" if ok else (diverged_text(step) if status == "diverged" else status)
            links.append(
                (
                    label,
                    f"{root}{run_href(tier, task, r['optimizer'], r['config_id'], rid)}",
                    "" if ok else f"status-{status}",
                    f"run {rid}" + (f": {why}" if why else ""),
                )
            )
        chosen = (r["optimizer"], r["config_id"]) in selected
        rows.append(
            {
                "id": cfg_anchor(r["optimizer"], r["config_id"]),
                "cls": "chosen" if chosen else "",
                "cells": [
                    cell(str(r["config_id"]), None, "chk", k="check", ti=r["optimizer"]),
                    cell(r["optimizer"], r["optimizer"]),
                    cell(
                        r.get("config_label") or "defaults",
                        None,
                        "cfg-cell",
                        ti=r.get("hparams_label") or "",
                        s="selected" if chosen else "",
                        sc="sel",
                    ),
                    cell(text(r.get("precision"))),
                    cell("", None, "seeds", ls=links),
                    cell(num(r.get("val_mean")), sort_value(r.get("val_mean")), "num"),
                    ci_cell(
                        r.get("test_mean"),
                        r.get("test_half"),
                        r.get("test_n") or 0,
                        g=warm_start_tag(r.get("warm_start_max")),
                    ),
                    cell(num(r.get("hp_lr"), 3), sort_value(r.get("hp_lr")), "num"),
                    cell(status_text(r.get("status_counts") or {}), sort_value(r.get("n_runs"))),
                    cell(str(r["config_id"])),
                ],
            }
        )
    return {"id": anchor("configs", tier, task), "cols": cols, "rows": rows}


def comparisons_table(cmp: pd.DataFrame, rvf: pd.DataFrame, root: str, claims: bool = True) -> dict:
    """Root vs root-free rows (``comparisons.comparisons``), with the pair's other measurements optional."""
    cols = [
        col("pair", "root-based → root-free, on the task below it (↑: higher is better, ↓: lower)"),
        col("direction", "which side the two-sided Welch test favours at p < 0.05 (uncorrected)"),
        col("Δ root-free − root", "signed so that positive favours root-free; ± Welch 95% interval", True),
        col("claim verdict", "the formal verdict of the claim this task speaks to (leaderboard.verdicts)"),
        col("p", "two-sided Welch t-test", True),
        col("q", "Benjamini-Hochberg q within the claim (one-sided test against the claim)", True),
        col("seeds", "finished seeds, root / root-free", True),
        col("budget", "configurations tried, root / root-free", True),
        col("root", "test metric of the root-based method", True, opt=True),
        col("root-free", "test metric of the root-free method", True, opt=True),
        col("why", "the verdict's reason", opt=True),
        col("steps→target", "root / root-free", True, opt=True),
        col("step time", "root / root-free, × fused AdamW", True, opt=True),
        col("state B/param", "root / root-free", True, opt=True),
        col(f"{agg.CNN_REFERENCE} reference", "CNN tasks only", True, opt=True),
    ]
    if isinstance(rvf, dict):  # already keyed (``rvf_by_pair``)
        extra = rvf
    else:
        extra = rvf_by_pair(rvf)
    rows = []
    for r in cmp.to_dict("records"):
        x = extra.get((r["tier"], r["task"], r["root"], r["free"]), {})
        d, h = ci_text(r["oriented"], r["diff_half"], sign=True)
        metric = f"{r['metric_name']} {'↑' if r['higher_is_better'] else '↓'}"
        sgd = (
            ci_cell(x.get("sgd_test_mean"), x.get("sgd_test_half"), x.get("sgd_test_n") or 0)
            if x.get("sgd_reference") and not missing(x.get("sgd_test_mean"))
            else cell(f"no {agg.CNN_REFERENCE} runs" if x.get("sgd_reference") else "", "", "num muted")
        )
        rows.append(
            {
                "id": r["anchor"],
                "cls": "",
                "cells": [
                    cell(
                        f"{r['root']} → {r['free']}",
                        f"{r['task']} {r['root']} {r['free']}",
                        "pair",
                        ls=((r["task"], f"{root}{task_href(r['tier'], r['task'])}", "task", metric),),
                        s=metric,
                    ),
                    cell(r["direction"], None, DIRECTION_CLASS.get(r["direction"], "")),
                    cell(d, sort_value(r["oriented"]), "num", s=h, sc="ci"),
                    cell(r["verdict"] or "no claim", None, VERDICT_CLASS.get(r["verdict"], "muted"), ti=r["reason"]),
                    cell(num(r["p"], 2), sort_value(r["p"]), "num"),
                    cell(num(r["q"], 2), sort_value(r["q"]), "num"),
                    cell(
                        f"{_int(r['root_n'])} / {_int(r['free_n'])}",
                        sort_value(min(_f(r["root_n"]), _f(r["free_n"]))),
                        "num",
                    ),
                    cell(f"{_int(r['root_budget'])} / {_int(r['free_budget'])}", sort_value(r["free_budget"]), "num"),
                    ci_cell(r["root_mean"], r["root_half"], r["root_n"] or 0),
                    ci_cell(r["free_mean"], r["free_half"], r["free_n"] or 0),
                    cell(r["reason"] or "–", None, "wrap"),
                    cell(
                        f"{num(x.get('root_stt'), 6)} / {num(x.get('free_stt'), 6)}",
                        sort_value(x.get("free_stt")),
                        "num",
                    ),
                    cell(
                        f"{num(x.get('root_step_ratio'), 3)} / {num(x.get('free_step_ratio'), 3)}",
                        sort_value(x.get("free_step_ratio")),
                        "num",
                    ),
                    cell(
                        f"{num(x.get('root_state_bytes_per_param'), 3)} / "
                        f"{num(x.get('free_state_bytes_per_param'), 3)}",
                        sort_value(x.get("free_state_bytes_per_param")),
                        "num",
                    ),
                    sgd,
                ],
            }
        )
    return drop_empty(
        {"id": anchor("comparisons", *sorted(set(cmp["tier"])) if len(cmp) else ["none"]), "cols": cols, "rows": rows}
    )


def rvf_by_pair(rvf: pd.DataFrame) -> dict:
    """``root_vs_free`` rows keyed by (tier, task, root, free), for ``comparisons_table``."""
    return {(r["tier"], r["task"], r["root"], r["free"]): r for r in rvf.to_dict("records")} if len(rvf) else {}


def _int(v) -> str:
    return "–" if missing(v) else str(int(v))


def _f(v) -> float:
    return float("nan") if missing(v) else float(v)


def pairs_missing(rvf: pd.DataFrame) -> list[dict]:
    """Per task, the declared pairs that lack one side (or both), naming the side without runs."""
    if not len(rvf):
        return []
    both = agg.both_sides_ran(rvf)

    def label(r):
        lacking = r["root"] if r["free_present"] else r["free"] if r["root_present"] else "either"
        return f"{r['root']}/{r['free']} (no runs of {lacking})"

    return [
        {"task": task, "href": task_href(g["tier"].iloc[0], task), "pairs": [label(r) for r in g.to_dict("records")]}
        for task, g in rvf[~both].groupby("task", sort=True)
    ]


def tiers_table(formal: pd.DataFrame, agreement: pd.DataFrame, root: str) -> dict:
    """The claims' verdicts with the tiers side by side: one row per (claim, task, comparison), one column per
    tier, each verdict followed by what it rests on (q, seeds, configurations tried); then, per task, the
    Kendall tau of each consecutive pair of tiers' optimizer rankings (``leaderboard.tiers``)."""
    present = tiers.ranked_tiers(formal["tier"] if len(formal) else [])
    pairs = [(r["cheap"], r["dear"]) for r in agreement.to_dict("records")] if len(agreement) else []
    pairs = list(dict.fromkeys(pairs))
    cols = [col("claim", num_=True), col("task"), col("comparison")]
    cols += [col(f"{t} tier", f"verdict · BH q · seeds per side · configurations tried, {t} tier") for t in present]
    cols += [
        col(f"τ {a}→{b}", f"Kendall tau of the optimizer rankings, {a} vs {b} tier (95% CI over seeds; p: unrelated)")
        for a, b in pairs
    ]
    taus = {(r["task"], r["cheap"], r["dear"]): r for r in agreement.to_dict("records")} if len(agreement) else {}
    by = {}
    for r in formal.to_dict("records") if len(formal) else []:
        by.setdefault((r["claim"], r["task"], r["comparison"]), {})[r["tier"]] = r
    rows = []
    for (claim, task, comparison), per_tier in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        cells = [cell(str(claim), claim, "num"), cell(task), cell(comparison)]
        for t in present:
            r = per_tier.get(t)
            if r is None:
                cells.append(cell("–"))
                continue
            rests_on = f"q {num(r['q'], 2)} · n {text(r['n'] or None)} · {text(r['budget'] or None)} cfg"
            cells.append(
                cell(
                    r["verdict"] or "–",
                    None,
                    VERDICT_CLASS.get(r["verdict"], ""),
                    h=f"{root}{task_href(t, task)}",
                    s=rests_on,
                    sc="ci",
                    ti=r["reason"] or "",
                )
            )
        for a, b in pairs:
            g = taus.get((task, a, b))
            if g is None or missing(g["tau"]):
                cells.append(cell("–"))
            else:
                interval = f"[{signed(g['low'], 2)}, {signed(g['high'], 2)}] · p {num(g.get('p'), 3)}"
                cells.append(cell(signed(g["tau"], 2), g["tau"], "num", s=interval, sc="ci"))
        rows.append({"id": anchor("tiers", claim, task, comparison), "cls": "", "cells": cells})
    return {"id": "tiers-side-by-side", "cols": cols, "rows": rows}


def verdicts_table(formal: pd.DataFrame, root: str) -> dict:
    """The formal claim verdicts (``verdicts.decide``), one row per (claim, task, comparison)."""
    cols = [
        col("claim", num_=True),
        col("task"),
        col("comparison"),
        col("verdict"),
        col("difference", "signed so that positive is better; 95% Welch interval", True),
        col("q", "Benjamini-Hochberg within the claim", True),
        col("seeds"),
        col("budget", "configurations tried"),
        col("reason"),
        col("p", "one-sided Welch, against the claim", True, opt=True),
    ]
    rows = []
    for r in formal.to_dict("records"):
        d, _ = ci_text(r["diff"], (r["high"] - r["low"]) / 2 if not missing(r["high"]) else float("nan"), sign=True)
        ci = f"[{signed(r['low'], 3)}, {signed(r['high'], 3)}]" if not missing(r["low"]) else ""
        rows.append(
            {
                "id": anchor("v", r["tier"], r["claim"], r["task"], r["comparison"]),
                "cls": "context" if r["verdict"] == "context" else "",
                "cells": [
                    cell(str(r["claim"]), r["claim"], "num"),
                    cell(r["task"], h=f"{root}{task_href(r['tier'], r['task'])}"),
                    cell(r["comparison"]),
                    cell(r["verdict"] or "–", None, VERDICT_CLASS.get(r["verdict"], "")),
                    cell(d, sort_value(r["diff"]), "num", s=ci, sc="ci"),
                    cell(num(r["q"], 2), sort_value(r["q"]), "num"),
                    cell(text(r["n"] or None)),
                    cell(text(r["budget"] or None)),
                    cell(r["reason"] or "–", None, "wrap"),
                    cell(num(r["p"], 2), sort_value(r["p"]), "num"),
                ],
            }
        )
    return {
        "id": anchor("verdicts", *sorted(set(formal["tier"])) if len(formal) else ["none"]),
        "cols": cols,
        "rows": rows,
    }


def reference_table(overview: pd.DataFrame, root: str, tier: str) -> dict:
    """Tasks with fewer than two replicated optimizers: what ran, compactly."""
    cols = [
        col("task"),
        col("optimizer"),
        col("test metric", "mean ± 95% t-interval, n seeds", True),
        col("configs", "configurations tried", True),
        col("runs"),
    ]
    rows = [
        {
            "id": anchor("ref", tier, r["task"], r["optimizer"]),
            "cls": "",
            "cells": [
                cell(r["task"], r["task"], h=f"{root}{task_href(tier, r['task'])}"),
                cell(r["optimizer"]),
                ci_cell(r.get("test_mean"), r.get("test_half"), r.get("test_n") or 0),
                cell(str(int(r.get("n_configs") or 0)), sort_value(r.get("n_configs")), "num"),
                cell(status_text(r.get("status_counts") or {})),
            ],
        }
        for r in overview.to_dict("records")
    ]
    return {"id": anchor("reference", tier), "cols": cols, "rows": rows}


def speedup_table(across: dict, opt_info: dict, tier: str) -> dict:
    """Per compared optimizer: profile scores and the geometric-mean speedup against ``REFERENCE_OPTIMIZER``,
    over the common task set."""
    reference, n_tasks = agg.REFERENCE_OPTIMIZER, len(across["tasks"])
    cols = [
        col("optimizer"),
        col("profile score (time)", "area under the profile over the common tasks", True),
        col("profile score (steps)", num_=True),
        col("tasks reached", "of the common tasks", True),
        col(f"speedup vs {reference} (time)", "geometric mean over the common tasks both reached", True),
        col(f"speedup vs {reference} (steps)", "geometric mean", True),
    ]
    rows = [
        {
            "id": anchor("score", tier, r["optimizer"]),
            "cls": "",
            "cells": [
                cell(r["optimizer"], rf=bool(opt_info.get(r["optimizer"], {}).get("root_free"))),
                cell(num(r["score"], 3), sort_value(r["score"]), "num"),
                cell(num(r["score_steps"], 3), sort_value(r["score_steps"]), "num"),
                cell(f"{r['n_reached']}/{n_tasks}", r["n_reached"], "num"),
                cell(ratio(r["speedup_time"]), sort_value(r["speedup_time"]), "num", s=f"over {r['n_time']} tasks"),
                cell(ratio(r["speedup_steps"]), sort_value(r["speedup_steps"]), "num", s=f"over {r['n_steps']} tasks"),
            ],
        }
        for r in across["speedup"].to_dict("records")
    ]
    return {"id": anchor("scores", tier), "cols": cols, "rows": rows}


def ranks_table(across: dict, tier: str) -> dict:
    """Per compared optimizer: its rank on every common task and the mean rank over them."""
    tasks = across["tasks"]
    cols = [col("optimizer"), col("mean rank", "over the common tasks", True), col("tasks", num_=True)] + [
        col(t, num_=True, opt=i >= 6) for i, t in enumerate(tasks)
    ]
    rows = [
        {
            "id": anchor("rank", tier, r["optimizer"]),
            "cls": "",
            "cells": [
                cell(r["optimizer"]),
                cell(num(r["mean_rank"], 3), sort_value(r["mean_rank"]), "num"),
                cell(str(int(r["n_tasks"])), r["n_tasks"], "num"),
            ]
            + [
                cell(num(r[t], 3), sort_value(r[t]), "num", h=task_href(tier, t) if not missing(r[t]) else "")
                for t in tasks
            ],
        }
        for r in across["ranks"].to_dict("records")
    ]
    return {"id": anchor("ranks", tier), "cols": cols, "rows": rows}


def head_to_head_table(across: dict, tier: str) -> dict:
    """Row optimizer against column optimizer over the tasks both ran: better–worse (of n), Welch p < 0.05."""
    h2h = across["head_to_head"]
    opts = sorted(set(h2h["optimizer"])) if len(h2h) else []
    by = {(r["optimizer"], r["opponent"]): r for r in h2h.to_dict("records")}
    cols = [col("optimizer")] + [
        col(f"vs {o}", f"significantly better – significantly worse than {o}, of the tasks both ran", True)
        for o in opts
    ]
    rows = []
    for a in opts:
        cells = [cell(a)]
        for b in opts:
            r = by.get((a, b))
            if a == b or r is None or not r["n_tasks"]:
                cells.append(cell("", "", "num muted"))
                continue
            cls = "num d-free" if r["better"] > r["worse"] else "num d-root" if r["worse"] > r["better"] else "num"
            cells.append(
                cell(
                    f"{r['better']}–{r['worse']}",
                    r["better"] - r["worse"],
                    cls,
                    s=f"of {r['n_tasks']}",
                    ti=f"{a} vs {b} on {', '.join(r['tasks'])}: {r['better']} better, {r['worse']} worse, "
                    f"{r['not_significant']} not significant, {r['untestable']} untestable",
                )
            )
        rows.append({"id": anchor("h2h", tier, a), "cls": "", "cells": cells})
    return {"id": anchor("h2h", tier), "cols": cols, "rows": rows}


def hardware_table(hw: pd.DataFrame) -> dict:
    """Which machines and software produced the runs (``aggregate.hardware``)."""
    cols = [
        col(c)
        for c in [
            "tier",
            "device",
            "cpu",
            "threads",
            "torch",
            "cuda",
            "host",
            "runs",
            "tasks",
            "first run",
            "last run",
            "git commits",
        ]
    ]
    rows = [
        {
            "id": anchor("hw", i),
            "cls": "",
            "cells": [
                cell(text(r.get("tier"))),
                cell(text(r.get("device"))),
                cell(text(r.get("cpu"))),
                cell(text(r.get("num_threads"))),
                cell(text(r.get("torch_version"))),
                cell(text(r.get("cuda_version"))),
                cell(text(r.get("hostname"))),
                cell(str(r["n_runs"]), r["n_runs"], "num"),
                cell(text(r.get("tasks")), None, "wrap"),
                cell(text(r.get("first"))),
                cell(text(r.get("last"))),
                cell(text(r.get("git_shas")), None, "wrap"),
            ],
        }
        for i, r in enumerate(hw.to_dict("records"))
    ]
    return {"id": "hardware", "cols": cols, "rows": rows}


def task_settings_table(summary: pd.DataFrame, task_groups, task_info: dict) -> dict:
    """Per (tier, task): its declared model kind and the values its tier settings took."""
    set_cols = [c for c in summary.columns if c.startswith("task_") and c != "task_source_hash"]
    values = {c: summary[c].to_numpy() for c in set_cols}
    index = summary.groupby(["tier", "task"], sort=False).indices if len(summary) else {}
    rows = []
    for tier, task_names in task_groups:
        for task in task_names:
            idx = index.get((tier, task), [])
            settings = []
            for c in set_cols:
                vals = sorted({agg.format_value(v) for v in values[c][idx] if not missing(v)})
                if vals:
                    settings.append(f"{c[5:]}={'/'.join(vals)}")
            info = task_info.get(task, {})
            kind = info.get("model_kind") if info.get("registered") else "none declared (not in this checkout)"
            rows.append(
                {
                    "id": anchor("settings", tier, task),
                    "cls": "",
                    "cells": [
                        cell(tier),
                        cell(task, h=task_href(tier, task)),
                        cell(text(kind)),
                        cell(", ".join(settings) or "–", None, "wrap"),
                    ],
                }
            )
    return {
        "id": "task-settings",
        "cols": [
            col("tier"),
            col("task"),
            col("model kind", "declared by the task registry (TaskSpec.model_kind)"),
            col("settings"),
        ],
        "rows": rows,
    }


def optimizers_table(opt_info: dict) -> dict:
    """The optimizers in the results with what the registry declares about them."""

    def root_free(i):
        return {True: "yes", False: "no"}.get(i.get("root_free"), "–")

    def evaluated_at(i):
        averaged = eval_mode_tag(i.get("eval_mode"))  # the overview's badge, one label for both
        return f"{averaged[0]} (eval_mode)" if averaged else {False: "training weights"}.get(i.get("eval_mode"), "–")

    rows = [
        {
            "id": anchor("opt", name),
            "cls": "",
            "cells": [
                cell(name, rf=bool(i.get("root_free"))),
                cell("yes" if i.get("registered") else "no (not in this checkout: nothing declared)"),
                cell(text(i.get("family") or None)),
                cell(text(i.get("preconditioner") or None)),
                cell(root_free(i)),
                cell(text(i.get("pair") or None)),
                cell(evaluated_at(i)),
                cell(i.get("description") or "–", None, "wrap"),
                cell(
                    i.get("paper") or "–", h=i.get("paper") if str(i.get("paper") or "").startswith("https://") else ""
                ),
            ],
        }
        for name, i in sorted(opt_info.items())
        if i.get("in_results")
    ]
    return {
        "id": "optimizers",
        "cols": [
            col("optimizer"),
            col("registered"),
            col("family"),
            col("preconditioner"),
            col("root-free"),
            col("pair"),
            col("evaluated at", "declared by the registry (OptimizerSpec.eval_mode)"),
            col("description"),
            col("paper"),
        ],
        "rows": rows,
    }


def downloads_table(files: list[tuple[str, int, str]]) -> dict:
    """The data files: (name, size in bytes, contents)."""
    return {
        "id": "files",
        "cols": [col("file"), col("size", num_=True), col("contents")],
        "rows": [
            {
                "id": anchor("file", name),
                "cls": "",
                "cells": [cell(name, h=f"data/{name}"), cell(nbytes(size), size, "num"), cell(desc, None, "wrap")],
            }
            for name, size, desc in files
        ],
    }
