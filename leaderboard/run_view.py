"""What one run's page shows, from that run's own data only (so an unchanged run's page can be reused)."""
from __future__ import annotations

import json
import math
import os
from urllib.parse import quote

from rootbench.leaderboard import aggregate as agg
from rootbench.leaderboard.fmt import missing, nbytes, num, relative, safe_name, seconds, task_href, text

SPLIT_ORDER = ("train_batch", "train", "val", "test", "run")
PROVENANCE = ("git_sha", "git_dirty", "rootbench_version", "torch_version", "cuda_version", "device", "cpu",
              "num_threads", "hostname", "python_version", "started_at", "schema_version", "optimizer_source_hash",
              "task_source_hash")


def curve_table(pts: dict | None) -> tuple[dict, dict]:
    """A run's evaluations as a step x (split, metric) table, and the final (last finite) values."""
    curve, finals = {"cols": [], "rows": []}, {}
    if pts is None or not len(pts["step"]):
        return curve, finals
    keys = sorted({(sp, m) for sp, m in zip(pts["split"], pts["metric"])},
                  key=lambda k: (SPLIT_ORDER.index(k[0]) if k[0] in SPLIT_ORDER else 9, str(k)))
    table: dict = {}
    for st, sp, m, v, tt in zip(pts["step"], pts["split"], pts["metric"], pts["value"], pts["train_time_s"]):
        row = table.setdefault(-1 if missing(st) else int(st), {"time": tt})
        row[(sp, m)] = v
    steps = sorted(table)
    for k in keys:
        for st in reversed(steps):
            v = table[st].get(k)
            if not missing(v) and math.isfinite(float(v)):
                finals[k] = v
                break
    curve["cols"] = ["step", "train clock"] + [f"{sp} {m}" for sp, m in keys]
    curve["rows"] = [[str(st), seconds(table[st]["time"])] + [num(table[st].get(k)) for k in keys] for st in steps]
    return curve, finals


def run_view(r: dict, pts: dict | None, root_rel: str, runs_root: str) -> dict:
    """Everything a run page shows: results, settings, measurements, provenance and the curve."""
    hp = [(k[3:], agg.format_value(v)) for k, v in sorted(r.items()) if k.startswith("hp_") and not missing(v)]
    ts = [(k[5:], agg.format_value(v)) for k, v in sorted(r.items())
          if k.startswith("task_") and k != "task_source_hash" and not missing(v)]
    metric = text(r.get("metric_name"))
    curve, finals = curve_table(pts)
    results = [("metric", f"{metric} ({'higher' if r.get('higher_is_better') else 'lower'} is better)"),
               ("final train", num(finals.get(("train", metric)))), ("final val", num(finals.get(("val", metric)))),
               ("final test", num(finals.get(("test", metric)))),
               ("final test loss", num(finals.get(("test", "loss")))),
               ("target (val)", num(r.get("target"))), ("steps to target", num(r.get("steps_to_target"), 6)),
               ("time to target", seconds(r.get("time_to_target_s"))),
               ("steps completed", num(r.get("steps_completed"), 8))]
    meas = [("train time", seconds(r.get("total_train_time_s"))), ("eval time", seconds(r.get("total_eval_time_s"))),
            ("setup time", seconds(r.get("setup_time_s"))), ("wall time", seconds(r.get("wall_time_s"))),
            ("step time / fused AdamW", f"{num(r.get('step_time_ratio_adamw'), 3)}×"),
            ("optimizer step", seconds(r.get("opt_step_time_s"))), ("AdamW step", seconds(r.get("adamw_step_time_s"))),
            ("peak memory above baseline", f"{nbytes(r.get('peak_mem_bytes'))} ({text(r.get('peak_mem_kind'))})"),
            ("peak memory total", nbytes(r.get("peak_mem_total_bytes"))),
            ("optimizer state",
             f"{nbytes(r.get('opt_state_bytes'))} ({num(r.get('opt_state_bytes_per_param'), 3)} B/param)"),
            ("parameters", num(r.get("n_params"), 12)), ("parameter bytes", nbytes(r.get("param_bytes"))),
            ("data source", text(r.get("data_source"))), ("data wait share", num(r.get("data_wait_share"), 3)),
            ("family / weight decay", f"{text(r.get('family'))} / {text(r.get('wd_kind'))}")]
    prov = [(k, text(r.get(k))) for k in PROVENANCE if k in r]
    try:
        cfg = json.dumps(json.loads(r.get("config_json") or "{}"), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        cfg = text(r.get("config_json"))
    rel = relative(r["path"], runs_root).replace(os.sep, "/")
    status = text(r.get("status"))
    return {"run_id": str(r["run_id"]), "task": text(r.get("task")), "optimizer": text(r.get("optimizer")),
            "seed": text(r.get("seed")), "precision": text(r.get("precision")), "status": status,
            "status_cls": safe_name(status),
            "status_message": "" if missing(r.get("status_message")) else str(r["status_message"]),
            "traceback": "" if missing(r.get("traceback")) else str(r["traceback"]),
            "task_href": f"{root_rel}{task_href(str(r.get('tier')), str(r.get('task')))}",
            "parquet_href": f"{root_rel}data/runs/{quote(rel)}", "parquet_size": nbytes(r.get("file_size")),
            "results": results, "hparams": hp or [("–", "none recorded")],
            "task_settings": ts or [("–", "none recorded")], "measurements": meas, "provenance": prov,
            "curve": curve, "config_json": cfg}
