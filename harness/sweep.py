"""``rootbench sweep``: quasi-random two-stage search, selection on validation, reseeding, resume, Ray.

    rootbench sweep --task T --opt O --trials N --seeds K [--tier quick] [--precision fp32] [--seed S]
                    [--stage2-trials M] [--backend local|ray] [--workers W] [--address ADDR]
                    [--runs DIR] [--retry-failed] [key=value ...]

Protocol (the paper's two-stage random search after Choi et al. 2019, https://arxiv.org/abs/1910.05446,
which ran 100 trials per stage and reported the best run; here quasi-random and horizon-aware):

1. **Stage 1.** ``N`` configurations are drawn from the optimizer's declared ``search_space``
   (``harness/search.py``): fixed ``log``/``uniform``/``choice`` ranges, ``log1m`` momenta and
   ``horizon`` EMA rates whose time constant is a share of this run's length, resolved before drawing.
   Draws are a scrambled Halton sequence seeded per (task, optimizer, ``--seed``), so the same command
   draws the same configurations and different pairs get independent points. Where the optimizer
   declares the paper's published configuration for the task's model kind (``published``), it is one
   more stage-1 trial (``kind: published`` in the manifest; ``--no-published`` leaves it out). Floats are
   rounded to 4 significant digits, integer hyperparameters to integers. ``key=value`` arguments pin a
   hyperparameter (it leaves the search) or a task setting (``steps=200``) for every run of the sweep.
2. **Stage 2** (``--stage2-trials M``, optional). The ranges narrow around the best stage-1 trials:
   the top ``k = max(3, ceil(N / 5))`` trials with status ok (fewer if fewer are ok) give, for each
   ``log`` (``uniform``; ``log1m``: 1 - m) hyperparameter, the [min, max] of their values in log (linear) space, widened
   by 10% of the declared width on each side and clipped to the declared range; a ``choice`` keeps the
   options those trials used. With fewer than 2 ok trials the stage-1 space is reused. ``M`` more
   configurations are drawn from the narrowed space.
3. **Trials** run with run seed 0 (a trial is one run, as in the paper's sweeps); ``--seed`` seeds only
   the sampler. **Selection** is over the trials of both stages on the *final validation* value of the
   task's metric (direction from the task spec); the test split is never read. Diverged, failed
   (oom, timeout, error) and non-finite trials rank last, and so do warm-start dominated ones (final
   ``warm_start_share`` above ``search.WARM_START_LIMIT``: the preconditioner never took over from its
   initial value, so the trial measures heavy-ball SGD); ties go to the earlier trial.
4. **Seeds.** The selected configuration reruns with run seeds 0..K-1; seed 0 is the trial itself (a
   cache hit). Their final val and test values are reported (test only here, after selection).

Cache and resume: every run is content-addressed (``run_id``), and a run whose parquet file exists and
is valid is never scheduled again, so an interrupted sweep resumes where it stopped. A cached failure
(oom, timeout, error) is rerun only with ``--retry-failed``; an unreadable file is rerun.

The tuning budget is recorded in a manifest, ``<runs>/sweeps/<task>/<optimizer>/<sweep_id>.json``
(``sweep_id`` hashes the sweep's configuration): every trial (run_id, stage, hyperparameters, val
value, status), the ranges of each stage, the selection, the seeds' run_ids and the budget (trials
per stage, distinct runs, compute seconds). It is the authoritative record of tuning effort;
``harness.records.find_runs`` skips ``sweeps/``.

Backends: ``local`` runs each run in its own spawned process (``harness.execute.get_or_run``), ``--workers W``
at a time, each with ``max(1, cores // W)`` torch threads (``RunConfig.threads``, not part of the
run_id), so its peak memory is its own. ``ray`` submits each run as a Ray task (one fresh worker
process per run, ``--cpus-per-run``/``--gpus-per-run`` resources) that writes its own results to
``--runs``; on a multi-machine cluster that must be a shared filesystem path or a pyarrow URI
(``file:///shared/runs``, ``s3://bucket/runs``) and rootbench must be installed on the workers (the
same venv on one machine; ``pip install rootbench[tasks]`` on each node of a cluster).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime as _dt
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rootbench.harness import search
from rootbench.harness.config import RunConfig
from rootbench.harness.records import ResultsError
from rootbench.harness.registry import UsageError
from rootbench.harness.resolve import RunSpec
from rootbench.harness.selection import as_float, finite_or_none, rank_trials, trial_row
from rootbench.harness.sweep_report import fmt, report
from rootbench.harness.sweep_space import (
    PROTOCOL,
    SEEDED_PROTOCOL,
    narrow_space,
    published_trial,
    search_space,
    seed_manifest,
    seeded_space,
    top_k,
)

MANIFEST_VERSION = 2
RAY_POLL_S = 1.0  # how often a Ray sweep waiting on its tasks checks the caller's stop event
EXIT_OK, EXIT_RUN_FAILED = 0, 1


# ---------------------------------------------------------------------------------------------
# the sweep


@dataclass
class SweepConfig:
    task: str
    optimizer: str
    trials: int = 8
    seeds: int = 1
    tier: str = "quick"
    precision: str = "fp32"
    seed: int = 0
    stage2_trials: int = 0
    overrides: dict = field(default_factory=dict)  # pinned hyperparameters and task settings
    time_limit: float | None = None
    device: str = "auto"
    ref_steps: int = 20
    runs: str = "runs"
    retry_failed: bool = False
    backend: str = "local"
    workers: int = 1
    threads: int | None = None  # torch threads per run; default cores // workers (local), cpus-per-run (ray)
    address: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: float | None = None
    quiet: bool = False
    also_precisions: tuple = ()  # rerun the selected config's seeds at these precisions (robustness)
    memory_limit: int | None = None  # bytes per run (None: no limit); past it a run ends as oom
    published: bool = True  # add the paper's published configuration as one more stage-1 trial
    around: str | None = None  # seed stage 1 from this tier's sweep of the same task/optimizer (a local search)


@dataclass
class Trial:
    stage: int
    index: int  # 0-based within the stage
    hparams: dict  # the sampled values only
    spec: RunSpec
    # drawn | published (the paper's configuration for the task's model kind) | carried (the --around
    # sweep's selection, carried to this run's length)
    kind: str = "drawn"

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _EitherEvent:
    """Set when its own event or the caller's is; ``set`` sets its own only."""

    def __init__(self, own: threading.Event, outer: threading.Event | None):
        self.own, self.outer = own, outer

    def is_set(self) -> bool:
        return self.own.is_set() or (self.outer is not None and self.outer.is_set())

    def set(self) -> None:
        self.own.set()


class Sweep:
    """One sweep: sample, schedule (cached runs are not rerun), select, reseed, record."""

    def __init__(self, cfg: SweepConfig, out=print, stop: threading.Event | None = None):
        """``stop``: an event its caller sets to end the sweep early (a campaign's interrupt reaching the sweeps
        it runs in threads); its running workers are stopped and nothing partial is written."""
        from rootbench.harness import records
        from rootbench.harness.resolve import resolve_run, split_overrides

        for name, value, low in (
            ("trials", cfg.trials, 1),
            ("seeds", cfg.seeds, 1),
            ("stage2-trials", cfg.stage2_trials, 0),
            ("workers", cfg.workers, 1),
            ("cpus-per-run", cfg.cpus_per_run, 1),
        ):
            if value < low:
                raise UsageError(f"--{name} must be at least {low}, got {value}")
        if cfg.backend not in ("local", "ray"):
            raise UsageError(f"unknown backend {cfg.backend!r}; choose local or ray")
        self.cfg, self.out, self.stop = cfg, out, stop
        self.pinned, self.settings = split_overrides(cfg.task, cfg.optimizer, cfg.tier, cfg.overrides)
        if cfg.threads is None:
            threads = cfg.cpus_per_run if cfg.backend == "ray" else max(1, _cores() // cfg.workers)
        else:
            threads = cfg.threads
        base = RunConfig(
            tier=cfg.tier,
            seed=0,
            precision=cfg.precision,
            hparams=dict(self.pinned),
            task_settings=dict(self.settings),
            time_limit=cfg.time_limit,
            device=cfg.device,
            ref_steps=cfg.ref_steps,
            threads=threads,
        )
        self.base = resolve_run(cfg.task, cfg.optimizer, base)  # bad names/values fail here, before any run
        from rootbench.harness.runner import pick_device
        from rootbench.tasks import check_data

        pick_device(cfg.device)
        check_data(cfg.task, cfg.tier, **self.settings)
        self.opt_spec, self.task_spec = self.base.optimizer, self.base.task
        self.pinned = {k: self.base.hparams[k] for k in self.pinned}
        period_key = self.opt_spec.period_hparam
        self.period = int(self.base.hparams.get(period_key, 1)) if period_key else 1
        self.declared = search_space(self.opt_spec, self.pinned)
        self.space = search_space(self.opt_spec, self.pinned, steps=self.base.tier_config.steps, period=self.period)
        self.published = published_trial(self.opt_spec, self.task_spec, self.pinned) if cfg.published else None
        self.defaults = dict(self.base.hparams)
        self.root = cfg.runs if "://" in cfg.runs else os.path.abspath(cfg.runs)
        self.seeded_from = None
        if cfg.around is not None:
            source = seed_manifest(self.root, cfg.task, cfg.optimizer, cfg.around, cfg.tier, cfg.precision)
            self.space, self.seeded_from = seeded_space(
                self.space, self.declared, source, self.base.tier_config.steps, self.period, self.pinned
            )
        identity = self.base.identity
        self.sweep_id = _hash(
            {
                "task": cfg.task,
                "optimizer": cfg.optimizer,
                "tier": cfg.tier,
                "precision": cfg.precision,
                "trials": cfg.trials,
                "stage2_trials": cfg.stage2_trials,
                "seeds": cfg.seeds,
                "sampler_seed": cfg.seed,
                "pinned": self.pinned,
                "task_config": identity["task_config"],
                "time_limit": cfg.time_limit,
                "space": self.space,
                "published": self.published,
                "protocol": PROTOCOL,
                "code": identity["code"],
                **({"around": {k: self.seeded_from[k] for k in ("tier", "sweep_id")}} if self.seeded_from else {}),
            }
        )
        records.check_writable(self.root)  # a read-only store fails now, not after the first run has trained
        self.trials: list[Trial] = []
        self.records: dict = {}  # run_id -> its Record, as stored
        self.ran = self.cached = 0
        self.bar = None
        self.best_val = None
        self._ray_started = False
        self.precision_ids: dict = {}

    # ----------------------------------------------------------------------------- scheduling

    def _trials(self, stage: int, space: dict, n: int) -> list[Trial]:
        out = []
        draws = search.sample_configs(
            space, n, self.cfg.seed, stage, self.defaults, stream=(self.cfg.task, self.cfg.optimizer)
        )
        for i, hp in enumerate(draws):
            out.append(Trial(stage, i, hp, self.base.replace(hparams={**self.pinned, **hp})))
        fixed = []
        if stage == 1 and self.published:  # the paper's point: one more stage-1 trial, recorded as such
            fixed.append(("published", dict(self.published)))
        if stage == 1 and self.seeded_from:  # the seeding sweep's selection, carried to this run's length
            fixed.append(("carried", dict(self.seeded_from["selected"])))
        for kind, hp in fixed:
            out.append(Trial(1, len(out), hp, self.base.replace(hparams={**self.pinned, **hp}), kind=kind))
        return out

    def _log(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stdout)
        else:
            self.out(msg)

    def _done(self, label: str, rec, how: str) -> None:
        self.records[rec.run_id] = rec
        metric = self.task_spec.metric
        val = rec.final("val", metric)
        status = rec.status + (
            " (cached failure; --retry-failed reruns it)" if how == "cache hit" and rec.failed else ""
        )
        share = as_float(rec.get("warm_start_share", float("nan")))
        selectable = not share > search.WARM_START_LIMIT  # (the rule ``rank_trials`` applies)
        warm = "" if selectable else f"  warm-start share {share:.2f} (not selectable)"
        took = as_float(rec.get("wall_time_s", float("nan")))
        if how == "ran" and np.isfinite(took):  # in a log without the bar, the pace of a long campaign
            how = f"ran {took / 60:.1f} min"
        self._log(f"{label:<12} run {rec.run_id}  {how:<11}  {status:<8} val {metric} {fmt(val)}{warm}")
        if self.bar is not None:
            self.bar.update(1)
            if rec.status == "ok" and np.isfinite(val) and selectable:  # the bar's best is what could be selected
                better = self.best_val is None or (
                    (val > self.best_val) if self.task_spec.higher_is_better else (val < self.best_val)
                )
                if better:
                    self.best_val = val
                    self.bar.set_postfix_str(f"best val {metric} {val:.4g}", refresh=True)

    def execute(self, jobs: list) -> None:
        """Get every (label, spec): stored results are reported as cache hits, the rest run on the backend."""
        from rootbench.harness.execute import cached_record

        todo, seen = [], set()
        for label, spec in jobs:
            if spec.run_id in seen:
                continue
            seen.add(spec.run_id)
            try:
                rec = cached_record(spec, self.root, retry_failed=self.cfg.retry_failed)
            except ResultsError as e:  # an unreadable stored file: say so and run it again
                self._log(f"rerunning {spec.run_id}: {e}")
                rec = None
            if rec is not None:
                self.cached += 1
                self._done(label, rec, "cache hit")
            else:
                todo.append((label, spec))
        if not todo:
            return
        run_all = self._run_ray if self.cfg.backend == "ray" else self._run_local
        for label, rec in run_all(todo):
            self.ran += 1
            self._done(label, rec, "ran")

    def _run_local(self, todo):
        from rootbench.harness.execute import get_or_run

        stop = _EitherEvent(threading.Event(), self.stop)

        def one(label, spec):
            out = get_or_run(
                spec,
                self.root,
                retry_failed=self.cfg.retry_failed,
                rerun_unreadable=True,
                memory_limit=self.cfg.memory_limit,
                stop=stop,
            )
            return label, out.record

        pool = futures.ThreadPoolExecutor(max_workers=self.cfg.workers)
        try:
            pending = [pool.submit(one, *job) for job in todo]
            for fut in futures.as_completed(pending):
                yield fut.result()
        finally:
            stop.set()  # an interrupt: each thread stops its worker; nothing partial is written (the caller's event
            # is left alone: a campaign's other sweeps go on)
            pool.shutdown(wait=True, cancel_futures=True)

    def _ray_init(self):
        """Connect to (``--address``) or start a Ray instance once per sweep; workers get the data root.

        Workers import ``rootbench`` from their own Python environment (the same venv on one machine, or
        ``pip install rootbench`` on every node of a cluster)."""
        import ray

        if not ray.is_initialized():
            cfg = self.cfg
            env = {}
            if os.environ.get("ROOTBENCH_DATA"):
                env["ROOTBENCH_DATA"] = os.environ["ROOTBENCH_DATA"]
            kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
            if cfg.address is None and not os.environ.get("RAY_ADDRESS"):  # a local instance sized to --workers
                kwargs.update(num_cpus=cfg.workers * cfg.cpus_per_run, include_dashboard=False)
            ray.init(address=cfg.address, **kwargs)
            self._ray_started = True
        return ray

    def _run_ray(self, todo):
        from rootbench.harness import records
        from rootbench.harness.runner import failure_rows

        ray = self._ray_init()
        cfg = self.cfg
        gpus = cfg.gpus_per_run
        if gpus is None:
            gpus = 1 if cfg.device.startswith("cuda") else 0
        # max_calls=1: a fresh worker process per run, so its peak memory is its own; max_retries=0: a
        # run killed (e.g. by the OOM killer) is recorded as failed, not silently repeated
        remote = ray.remote(max_calls=1, max_retries=0)(_ray_run).options(num_cpus=cfg.cpus_per_run, num_gpus=gpus)
        limit = cfg.workers if cfg.address else len(todo)  # on a cluster, --workers caps runs in flight
        queue = list(todo)
        inflight = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < limit:
                    label, spec = queue.pop(0)
                    inflight[remote.remote(spec.request(), self.root, cfg.retry_failed)] = (label, spec)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=RAY_POLL_S)
                if self.stop is not None and self.stop.is_set():
                    raise KeyboardInterrupt  # the caller's stop: the tasks in flight are cancelled below
                if not ready:
                    continue
                label, spec = inflight.pop(ready[0])
                try:
                    ray.get(ready[0])
                except (ray.exceptions.RayError, OSError) as e:  # the worker died (e.g. the OOM killer)
                    status = "oom" if isinstance(e, getattr(ray.exceptions, "OutOfMemoryError", ())) else "error"
                    records.write_run(
                        failure_rows(spec, status, f"ray task failed: {type(e).__name__}: {e}"[:2000]), self.root
                    )
                yield (
                    label,
                    records.read_record(records.run_path(self.root, spec.task_name, spec.optimizer_name, spec.run_id)),
                )
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)

    # ----------------------------------------------------------------------------- protocol

    def _table(self, trials: list[Trial]) -> pd.DataFrame:
        """Trials (first occurrence of each run_id, in trial order) ranked by final val."""
        seen, rows = set(), []
        for t in trials:
            if t.run_id in seen or t.run_id not in self.records:
                continue
            seen.add(t.run_id)
            rec = self.records[t.run_id]
            row = trial_row(rec)
            row.update(
                stage=t.stage,
                trial=t.index,
                hparams=t.hparams,
                wall_time_s=as_float(rec.get("wall_time_s", float("nan"))),
            )
            rows.append(row)
        columns = [
            "run_id",
            "status",
            "metric_name",
            "val",
            "test",
            "warm_start_share",
            "stage",
            "trial",
            "hparams",
            "wall_time_s",
        ]
        return rank_trials(pd.DataFrame(rows, columns=columns), self.task_spec.higher_is_better)

    def run(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        t0 = time.perf_counter()
        self.out(
            f"sweep {self.sweep_id}: {cfg.task} / {cfg.optimizer}, tier {cfg.tier}, {cfg.precision}; "
            f"{cfg.trials} + {cfg.stage2_trials} trials, {cfg.seeds} seed(s); backend {cfg.backend}, "
            f"{cfg.workers} worker(s), {self.base.config.threads} thread(s) per run"
        )
        if self.pinned:
            self.out("pinned: " + ", ".join(f"{k}={fmt(v)}" for k, v in self.pinned.items()))
        if self.seeded_from:
            src = self.seeded_from
            self.out(
                f"seeded from the {src['tier']} sweep {src['sweep_id']} ({src['resolved_for_steps']} steps): its top "
                f"{len(src['run_ids'])} eligible trials carried to {self.base.tier_config.steps} steps; its selection "
                "is one more trial: " + " ".join(f"{k}={fmt(v)}" for k, v in src["selected"].items())
            )
        self.out(f"stage 1 space (resolved for {self.base.tier_config.steps} steps): " + search.describe(self.space))
        if self.published:
            self.out(
                f"published configuration ({self.task_spec.model_kind}): "
                + " ".join(f"{k}={fmt(v)}" for k, v in self.published.items())
            )
        fixed = bool(self.published) + bool(self.seeded_from)
        total = cfg.trials + fixed + cfg.stage2_trials + cfg.seeds  # seed 0 counted again (cache hit)
        self.bar = tqdm(
            total=total,
            unit="run",
            desc=f"sweep {cfg.task}/{cfg.optimizer}",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=cfg.quiet,
            smoothing=0.1,
        )
        try:
            stage1 = self._trials(1, self.space, cfg.trials)
            self.trials = list(stage1)
            label = {"published": "paper", "carried": "carried"}
            self.execute([(f"s1 {label.get(t.kind, 'trial')} {t.index}", t.spec) for t in stage1])
            space2 = None
            if cfg.stage2_trials:
                ranked = self._table(stage1)
                ok = ranked[ranked["valid"]]
                by_id = {t.run_id: {**self.defaults, **t.hparams} for t in stage1}
                best = [by_id[r] for r in ok["run_id"].head(top_k(cfg.trials))]
                space2 = narrow_space(self.space, best)
                self._log(f"stage 2 space (top {len(best)} of stage 1): " + search.describe(space2))
                stage2 = self._trials(2, space2, cfg.stage2_trials)
                self.trials += stage2
                self.execute([(f"s2 trial {t.index}", t.spec) for t in stage2])
            ranked = self._table(self.trials)
            selected = ranked.iloc[0] if len(ranked) and ranked["valid"].iloc[0] else None
            seed_ids = []
            if selected is not None:
                chosen = next(t for t in self.trials if t.run_id == selected["run_id"])
                seed_specs = [chosen.spec.replace(seed=s) for s in range(cfg.seeds)]
                self.execute([(f"seed {c.seed}", c) for c in seed_specs])
                seed_ids = [c.run_id for c in seed_specs]
                extra = [c.replace(precision=p) for p in cfg.also_precisions for c in seed_specs]
                if extra:  # the same configuration and seeds at other precisions: directly comparable
                    self.bar.total += len(extra)
                    self.execute([(f"{c.precision} seed {c.seed}", c) for c in extra])
                    self.precision_ids = {p: [c.run_id for c in extra if c.precision == p] for p in cfg.also_precisions}
            self.bar.total = self.bar.n  # duplicates (identical draws) make fewer runs than planned
        finally:
            self.bar.close()
            self.bar = None
            if self._ray_started:
                import ray

                ray.shutdown()
                self._ray_started = False
        wall = time.perf_counter() - t0
        manifest = self._manifest(ranked, selected, seed_ids, space2, wall)
        path = write_manifest(manifest, self.root, cfg.task, cfg.optimizer, self.sweep_id)
        self.out(report(manifest))
        self.out(f"{self.ran} run(s) ran, {self.cached} cache hit(s), {wall:.1f} s; manifest {path}")
        return manifest

    def _manifest(self, ranked, selected, seed_ids, space2, wall) -> dict:
        from rootbench.harness.provenance import git_state

        cfg = self.cfg
        trials = []
        kinds = {t.run_id: t.kind for t in self.trials}
        for _, r in ranked.sort_values(["stage", "trial"]).iterrows():
            trials.append(
                {
                    "run_id": r["run_id"],
                    "stage": int(r["stage"]),
                    "trial": int(r["trial"]),
                    "kind": kinds.get(r["run_id"], "drawn"),
                    "hparams": r["hparams"],
                    "val": finite_or_none(r["val"]),
                    "status": r["status"],
                    "warm_start_share": finite_or_none(r["warm_start_share"]),
                    "eligible": bool(r["valid"]),
                    "rank": int(r["rank"]),
                    "wall_time_s": finite_or_none(r["wall_time_s"]),
                }
            )
        seeds = []
        for rid in seed_ids:
            if rid in self.records:
                t = trial_row(self.records[rid])
                seeds.append(
                    {
                        "seed": int(self.records[rid]["seed"]),
                        "run_id": rid,
                        "status": t["status"],
                        "val": finite_or_none(t["val"]),
                        "test": finite_or_none(t["test"]),
                    }
                )
        trial_ids = set(ranked["run_id"])
        seed_wall = sum(
            as_float(self.records[r].get("wall_time_s", 0.0))
            for r in seed_ids
            if r in self.records and r not in trial_ids
        )
        trial_wall = float(np.nansum(ranked["wall_time_s"])) if len(ranked) else 0.0
        sha, dirty = git_state()
        return {
            "manifest_version": MANIFEST_VERSION,
            "sweep_id": self.sweep_id,
            "task": cfg.task,
            "optimizer": cfg.optimizer,
            "tier": cfg.tier,
            "precision": cfg.precision,
            "sampler_seed": cfg.seed,
            "run_seed_of_trials": 0,
            "protocol": PROTOCOL + (SEEDED_PROTOCOL.format(tier=cfg.around) if self.seeded_from else ""),
            "seeded_from": self.seeded_from,
            "pinned": self.pinned,
            "task_settings": self.settings,
            "time_limit": cfg.time_limit,
            "selection": {
                "split": "val",
                "metric": self.task_spec.metric,
                "statistic": "final",
                "higher_is_better": self.task_spec.higher_is_better,
            },
            "search_space": {
                "declared": search.as_json(self.declared),
                "stage1": search.as_json(self.space),
                "stage2": search.as_json(space2) if space2 is not None else None,
                "resolved_for_steps": self.base.tier_config.steps,
                "period": self.period,
                "sampler": search.SAMPLER,
            },
            "published": self.published,
            "trials": trials,
            "selected": None
            if selected is None
            else {
                "run_id": selected["run_id"],
                "stage": int(selected["stage"]),
                "trial": int(selected["trial"]),
                "hparams": {**self.pinned, **selected["hparams"]},
                "val": finite_or_none(selected["val"]),
            },
            "seeds": seeds,
            "other_precisions": self.precision_ids,
            "budget": {
                "trials": len(trials),
                "stages": 2 if cfg.stage2_trials else 1,
                "trials_per_stage": [
                    sum(t["stage"] == s for t in trials) for s in (1, 2) if s == 1 or cfg.stage2_trials
                ],
                "seeds": cfg.seeds,
                "distinct_runs": len(set(ranked["run_id"]) | set(seed_ids)),
                "trial_compute_s": trial_wall,
                "total_compute_s": trial_wall + seed_wall,
            },
            "backend": cfg.backend,
            "workers": cfg.workers,
            "threads_per_run": self.base.config.threads,
            "last_invocation": {
                "wall_time_s": wall,
                "ran": self.ran,
                "cache_hits": self.cached,
                "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "git_sha": sha,
                "git_dirty": dirty,
            },
        }


def _ray_run(request, root: str, retry_failed: bool) -> str:
    """A Ray task: one run in this (fresh) worker process, stored through ``get_or_run``; returns its status."""
    from rootbench.harness.execute import get_or_run
    from rootbench.harness.resolve import resolve_run

    return get_or_run(
        resolve_run(*request), root, retry_failed=retry_failed, in_process=True, rerun_unreadable=True
    ).status


def write_manifest(manifest: dict, root: str, task: str, optimizer: str, sweep_id: str) -> str:
    """Write the manifest JSON atomically to ``<root>/sweeps/<task>/<optimizer>/<sweep_id>.json``."""
    from rootbench.harness import records

    return records.write_json(manifest, records.manifest_path(root, task, optimizer, sweep_id))


# ---------------------------------------------------------------------------------------------
# command line


def cmd_sweep(args) -> int:
    from rootbench.harness.config import parse_overrides
    from rootbench.harness.execute import parse_memory

    if args.backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("the ray backend needs ray: pip install 'rootbench[sweeps]' (or use --backend local)")
    cfg = SweepConfig(
        task=args.task,
        optimizer=args.opt,
        trials=args.trials,
        seeds=args.seeds,
        tier=args.tier,
        precision=args.precision,
        seed=args.seed,
        stage2_trials=args.stage2_trials,
        overrides=parse_overrides(args.overrides),
        time_limit=args.time_limit,
        device=args.device,
        ref_steps=args.ref_steps,
        runs=args.runs,
        retry_failed=args.retry_failed,
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        quiet=args.quiet,
        also_precisions=tuple(args.also_precisions),
        published=args.published,
        around=args.around,
        memory_limit=parse_memory(args.memory_limit)
        if args.memory_limit is not None
        else _share_of_memory(args.workers),
    )
    manifest = Sweep(cfg).run()
    if manifest["selected"] is None:
        return EXIT_RUN_FAILED
    return EXIT_RUN_FAILED if any(s["status"] in ("error", "oom") for s in manifest["seeds"]) else EXIT_OK


def _share_of_memory(workers: int) -> int | None:
    """The default per-run limit of a local sweep: the machine's safe share split over the workers."""
    from rootbench.harness.execute import default_memory_limit

    total = default_memory_limit()
    return None if total is None else total // max(1, workers)


def add_parser(subparsers) -> None:
    from rootbench.harness.config import PRECISIONS

    p = subparsers.add_parser(
        "sweep",
        help="quasi-random search (two stages optional), select on val, rerun the best with K seeds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True)
    p.add_argument("--opt", required=True)
    p.add_argument("--trials", type=int, default=8, help="stage-1 trials (default 8)")
    p.add_argument("--seeds", type=int, default=1, help="run seeds 0..K-1 of the selected config (default 1)")
    p.add_argument("--stage2-trials", type=int, default=0, help="trials in the narrowed second stage (default 0)")
    p.add_argument("--tier", default="quick")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--seed", type=int, default=0, help="sampler seed (trials themselves run with seed 0)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=int, default=1, help="runs at a time (ray: local instance size / cap)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default cores // workers)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    p.add_argument("--cpus-per-run", type=int, default=1, help="ray: CPUs requested per run")
    p.add_argument("--gpus-per-run", type=float, default=None, help="ray: GPUs per run (default 1 if --device cuda)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per run; the run ends as timeout")
    p.add_argument("--device", default="auto")
    p.add_argument("--ref-steps", type=int, default=20, help="steps timed against fused AdamW per run (0 skips)")
    p.add_argument("--runs", default="runs", help="results folder or pyarrow URI (file:///..., s3://...)")
    p.add_argument("--retry-failed", action="store_true", help="rerun cached runs that failed (oom/timeout/error)")
    p.add_argument(
        "--no-published",
        dest="published",
        action="store_false",
        help="leave out the paper's published configuration (a fixed stage-1 trial where declared)",
    )
    p.add_argument(
        "--memory-limit",
        default=None,
        help="per run: 8G, 512M, a share (0.25) or none; default 80%% of the memory split over the workers",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--around",
        default=None,
        metavar="TIER",
        help="a local search: stage 1 narrowed around this tier's sweep of the same task and optimizer (its top "
        "trials carried to this run's length) plus its selection as a fixed trial (e.g. --tier long --around quick)",
    )
    p.add_argument(
        "--also-precisions",
        nargs="*",
        default=[],
        choices=[x for x in PRECISIONS if x != "fp32"],
        help="rerun the selected configuration's seeds at these precisions too (e.g. bf16-pure)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="pinned hyperparameters and task settings")
    p.set_defaults(func=cmd_sweep)
