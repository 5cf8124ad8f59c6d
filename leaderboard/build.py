"""``rootbench site``: build the static leaderboard from ``runs/**/*.parquet``.

    rootbench site [--runs runs] [--out site]     # the HTML site (works from file:// and GitHub Pages)
    rootbench site --markdown [FILE]              # only the overview as Markdown (stdout or FILE)

Rendering stays dumb: ``load`` reads the files, ``aggregate`` computes every number with pandas and
``model`` collects the tables with the registries' declarations; ``tables`` and ``pages`` turn them into
plain lists of display strings that Jinja (``autoescape=True``) writes; ``exports`` writes the data files.
Plots are small hand-written SVG (``svgplot``) inlined into the page; the only script is a dozen lines of
table sorting; nothing is fetched at view time.

A rebuild is incremental (``cache``): runs whose file is unchanged are taken from the previous build's
tables and their pages are hard-linked from the previous site. The new site is written beside the old
one and swapped in at the end, so a failed build leaves the old site in place.
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
import shutil
import sys
import threading
import time

from rootbench.harness import records
from rootbench.harness.registry import UsageError
from rootbench.leaderboard import cache, exports, pages
from rootbench.leaderboard import load as loader
from rootbench.leaderboard.model import compute, import_registries

STATIC = os.path.join(pages.HERE, "static")
MARKER = ".rootbench-site"  # the build only ever replaces a folder that holds this file


def _warn(message: str) -> None:
    print(f"rootbench site: warning: {message}", file=sys.stderr)


def check_out(out: str) -> None:
    """``UsageError`` unless ``out`` can be (re)built: absent, empty or an earlier site, in a writable folder."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; give a folder")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        raise UsageError(f"--out {out} exists and is not a rootbench site (no {MARKER}); "
                         "choose another folder or empty it")
    # the new site is built beside ``out`` and renamed into place, so its parent must be writable
    records.check_writable(os.path.dirname(os.path.abspath(out)))


def site_info(n_runs: int) -> dict:
    """What the page footers say about this build."""
    from rootbench.harness import __version__
    from rootbench.harness.provenance import git_state

    sha, dirty = git_state()
    return {"n_runs": n_runs, "version": __version__,
            "git_sha": (sha[:10] + ("+dirty" if dirty else "")) if sha != "unknown" else "",
            "built_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _start_folder(tmp: str) -> None:
    """The marker, GitHub Pages' no-Jekyll flag and the static files."""
    with open(os.path.join(tmp, MARKER), "w") as f:
        f.write("built by `rootbench site`; this whole folder is replaced by the next build\n")
    with open(os.path.join(tmp, ".nojekyll"), "w") as f:
        f.write("")
    os.makedirs(os.path.join(tmp, "static"))
    for name in os.listdir(STATIC):
        shutil.copyfile(os.path.join(STATIC, name), os.path.join(tmp, "static", name))


def _swap(tmp: str, out: str, parent: str) -> None:
    """Replace ``out`` by ``tmp``; the old site disappears only once the new one is complete."""
    trash = None
    if os.path.exists(out):
        trash = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.old-{os.getpid()}")
        os.rename(out, trash)
    os.rename(tmp, out)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def build(runs_root: str = "runs", out: str = "site", warn=None, jobs: int | None = None, reuse: bool = True,
          plots: bool = True, log=None) -> dict:
    """Build the site into ``out``; returns counts and timings. Bad arguments raise ``UsageError``; data
    problems only warn."""
    from rootbench.harness import __version__

    warn = warn or _warn
    log = log or (lambda m: None)
    check_out(out)
    t_start = time.perf_counter()
    timings = {}
    warnings: list[str] = []

    def _warn_and_keep(m):
        warnings.append(m)
        warn(m)

    if not os.path.isdir(runs_root):
        _warn_and_keep(f"no results folder {runs_root}; the site will be empty (run `make bench` first)")
    previous = out if reuse and os.path.exists(os.path.join(out, MARKER)) else None
    manifest_old = cache.read_manifest(previous)
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.building-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(os.path.join(tmp, "runs"))
    try:
        registries = threading.Thread(target=import_registries, daemon=True)
        registries.start()  # overlaps the torch import with reading the run files
        # run pages are rendered by the workers that read the files (a page depends on its run alone)
        hook = functools.partial(pages.render_run_page, out=tmp, runs_root=runs_root, version=__version__)
        results = loader.load(runs_root, _warn_and_keep, previous=cache.data_cache(previous, manifest_old), jobs=jobs,
                              each=hook)
        timings["load"] = time.perf_counter() - t_start
        registries.join()
        log(f"loaded {len(results.runs)} runs ({results.n_read} files read, {results.n_reused} reused) "
            f"in {timings['load']:.1f} s")
        t0 = time.perf_counter()
        model = compute(results)
        timings["aggregate"] = time.perf_counter() - t0
        _start_folder(tmp)
        jinja = pages.env()
        site = site_info(len(model["summary"]))
        t0 = time.perf_counter()
        timings.update(pages.render_pages(model, tmp, jinja, site, warnings, plots=plots))
        timings["pages"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        key = pages.run_pages_key(__version__)
        page_fps, todo, reused = cache.reuse_run_pages(model["summary"], tmp, previous, manifest_old, key,
                                                       results.read_ids)
        pages.render_run_pages(model, tmp, todo, runs_root, __version__)
        timings["run_pages"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = exports.write_data(model, results, tmp, runs_root)
        timings["data"] = time.perf_counter() - t0
        pages.downloads_page(tmp, jinja, site, files)
        cache.write_manifest(tmp, key, page_fps, site)
        _swap(tmp, out, parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t_start
    return {"n_runs": len(results.runs), "n_read": results.n_read, "n_reused": results.n_reused,
            "pages_rendered": len(results.read_ids) + len(todo), "pages_reused": reused,
            "warnings": warnings, "timings": timings, "out": out}


def _markdown_only(args) -> int:
    if args.markdown != "-":
        records.check_writable(os.path.dirname(os.path.abspath(args.markdown)))
    registries = threading.Thread(target=import_registries, daemon=True)
    registries.start()
    results = loader.load(args.runs, _warn, jobs=args.jobs)
    registries.join()
    md = exports.markdown(compute(results))
    if args.markdown == "-":
        sys.stdout.write(md)
    else:
        exports.write_markdown(os.path.abspath(args.markdown), md)
        print(f"wrote {args.markdown}")
    return 0


def cmd_site(args) -> int:
    if args.markdown is not None:
        return _markdown_only(args)
    info = build(args.runs, args.out, warn=_warn, jobs=args.jobs, reuse=not args.clean)
    t = info["timings"]
    print(f"site: {info['n_runs']} runs ({info['n_read']} files read, {info['n_reused']} reused; "
          f"{info['pages_rendered']} run pages rendered, {info['pages_reused']} reused) in {t['total']:.1f} s "
          f"-> {os.path.join(info['out'], 'index.html')}")
    if info["warnings"]:
        print(f"{len(info['warnings'])} warning(s) above; the site lists them too", file=sys.stderr)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("site", help="build the static leaderboard site from runs/",
                              description="Build the static leaderboard (HTML, inline SVG, no network at view time).")
    p.add_argument("--runs", default="runs", help="results folder (default runs)")
    p.add_argument("--out", default="site", help="site folder, replaced as a whole (default site)")
    p.add_argument("--markdown", nargs="?", const="-", default=None, metavar="FILE",
                   help="only write the overview as Markdown, to stdout or FILE")
    p.add_argument("--jobs", type=int, default=None, help="processes for reading many run files (default: CPUs)")
    p.add_argument("--clean", action="store_true", help="do not reuse anything from the previous build")
    p.set_defaults(func=cmd_site)
