"""``rootbench site``: build the static leaderboard from ``runs/**/*.parquet``.

    rootbench site [--runs runs] [--out site]     # the HTML site (works from file:// and GitHub Pages)
    rootbench site --markdown [FILE]              # only the overview as Markdown (stdout or FILE)

Rendering stays dumb: ``load`` reads the files, ``aggregate`` computes every number with pandas and
``model`` collects the tables with the registries' declarations; ``tables`` and ``pages`` turn them into
plain lists of display strings that Jinja (``autoescape=True``) writes; ``exports`` writes the data files.
Plots are small hand-written SVG (``svgplot``) inlined into the page (and written to ``fig/`` for download); one
small script (``static/site.js``) sorts, filters and chooses columns; nothing is fetched at view time.

A rebuild is incremental (``cache``): folders of runs whose files are unchanged are taken from the previous
build's tables and their pages are hard-linked from the previous site; when nothing at all changed (runs,
manifests, code, declarations, options) the site is kept as it is. The new site is written beside the old
one and swapped in at the end, so a failed build leaves the old site in place.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import hashlib
import json
import os
import shutil
import sys
import threading
import time

from rootbench.harness import records, stats
from rootbench.harness.registry import UsageError
from rootbench.leaderboard import cache, declared, exports, pages
from rootbench.leaderboard import load as loader
from rootbench.leaderboard.model import compute

STATIC = os.path.join(pages.HERE, "static")
MARKER = ".rootbench-site"  # the build only ever replaces a folder that holds this file


def _warn(message: str) -> None:
    print(f"rootbench site: warning: {message}", file=sys.stderr)


def check_out(out: str) -> None:
    """``UsageError`` unless ``out`` can be (re)built: absent, empty or an earlier site, in a writable folder."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file; give a folder")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        raise UsageError(
            f"--out {out} exists and is not a rootbench site (no {MARKER}); choose another folder or empty it"
        )
    # the new site is built beside ``out`` and renamed into place, so its parent must be writable
    records.check_writable(os.path.dirname(os.path.abspath(out)))


def site_info(n_runs: int) -> dict:
    """What the page footers say about this build."""
    from rootbench.harness import __version__
    from rootbench.harness.provenance import git_state

    sha, dirty = git_state()
    return {
        "n_runs": n_runs,
        "version": __version__,
        "git_sha": (sha[:10] + ("+dirty" if dirty else "")) if sha != "unknown" else "",
        "built_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


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


def runs_link(out: str, runs_root: str, runs_url: str | None = None) -> str:
    """Where the site links the raw run files and sweep manifests, relative to the site's root (or a URL).

    ``runs_url`` when given; on GitHub Actions the runs at the built commit on GitHub (the published site does not
    carry them); else the runs folder relative to ``out`` (the site and the runs side by side, from ``file://``)."""
    if runs_url:
        return runs_url.rstrip("/")
    repo, sha, ws = (os.environ.get(k) for k in ("GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_WORKSPACE"))
    if os.environ.get("GITHUB_ACTIONS") == "true" and repo and sha and ws:
        rel = os.path.relpath(os.path.abspath(runs_root), os.path.abspath(ws))
        if not rel.startswith(".."):
            server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
            return f"{server}/{repo}/raw/{sha}/{rel.replace(os.sep, '/')}"
    return os.path.relpath(os.path.abspath(runs_root), os.path.abspath(out)).replace(os.sep, "/")


def _declarations(previous_manifest: dict) -> tuple[declared.Pending, str]:
    """The registries' declarations (being read), and the key they are stored under."""
    if declared.loaded():  # in this process (anything registered at run time included): exact and free
        snap = declared.snapshot()
        return declared.Pending(reuse=snap), "here:" + hashlib.sha256(
            json.dumps(snap, sort_keys=True).encode()
        ).hexdigest()[:20]
    key = declared.fingerprint()
    if previous_manifest.get("declared_key") == key and isinstance(previous_manifest.get("declared"), dict):
        return declared.Pending(reuse=previous_manifest["declared"]), key
    return declared.Pending(), key


def build(
    runs_root: str = "runs",
    out: str = "site",
    warn=None,
    jobs: int | None = None,
    reuse: bool = True,
    plots: bool = True,
    log=None,
    runs_url: str | None = None,
) -> dict:
    """Build the site into ``out``; returns counts and timings. Bad arguments raise ``UsageError``; data
    problems only warn. When nothing the site is made of changed since the previous build, the site is kept."""
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
    runs_href = runs_link(out, runs_root, runs_url)
    run_page_href = runs_href if "://" in runs_href or runs_href.startswith("/") else f"../{runs_href}"
    page_key = pages.run_pages_key(__version__, run_page_href)
    pending, declared_key = _declarations(manifest_old)  # first: the registry child takes seconds
    scanned = loader.scan(runs_root)
    n_files = sum(map(len, scanned.values()))
    if previous is None:  # a cold build: the readers' server imports while the folders are fingerprinted
        loader.warm_up(n_files, jobs)
    prints = {f: loader.folder_fingerprint(runs_root, f, ps) for f, ps in scanned.items()}
    key = cache.site_key(
        prints,
        page_key,
        declared_key,
        {"plots": plots, "runs": os.path.abspath(runs_root), "runs_href": runs_href, "version": __version__},
    )
    if previous and manifest_old.get("site_key") == key:
        for m in manifest_old.get("warnings", []):
            _warn_and_keep(m)
        n = int(manifest_old.get("n_runs") or 0)
        timings["total"] = time.perf_counter() - t_start
        return {
            "n_runs": n,
            "n_read": 0,
            "n_reused": n,
            "pages_rendered": 0,
            "pages_reused": n,
            "unchanged": True,
            "warnings": warnings,
            "timings": timings,
            "out": out,
        }
    loader.warm_up(n_files, jobs)  # (a no-op when already running)
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(out))}.building-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(os.path.join(tmp, "runs"))
    results = None
    try:
        threading.Thread(target=stats.t_quantile, args=(0.975, 2), daemon=True).start()  # scipy, while reading
        # run pages are rendered by the workers that read the files (a page depends on its folder alone)
        hook = functools.partial(
            pages.render_folder, out=tmp, runs_root=runs_root, version=__version__, runs_href=run_page_href
        )
        results = loader.load(
            runs_root,
            _warn_and_keep,
            previous=cache.data_cache(previous, manifest_old, page_key),
            jobs=jobs,
            each=hook,
            scanned=(scanned, prints),
        )
        timings["load"] = time.perf_counter() - t_start
        log(
            f"loaded {len(results.runs)} runs ({results.n_read} files read, {results.n_reused} reused) "
            f"in {timings['load']:.1f} s"
        )
        snap = pending.get()
        timings["declared_wait"] = time.perf_counter() - t_start - timings["load"]
        gc.freeze()  # the loaded tables stay to the end: later collections need not walk them again
        t0 = time.perf_counter()
        model = compute(results, snap=snap, warn=_warn_and_keep)
        timings["aggregate"] = time.perf_counter() - t0
        _start_folder(tmp)
        jinja = pages.env()
        site = site_info(len(model["summary"]))
        t0 = time.perf_counter()
        timings.update(pages.render_pages(model, tmp, jinja, site, warnings, plots=plots))
        timings["pages"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reused, todo = cache.reuse_run_pages(model["summary"], tmp, previous, results.read_folders)
        pages.render_run_pages(model, tmp, todo, runs_root, __version__, run_page_href)
        timings["run_pages"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = exports.write_data(model, results, tmp)
        timings["data"] = time.perf_counter() - t0
        pages.downloads_page(tmp, jinja, site, files, runs_href)
        t0 = time.perf_counter()
        for m in results.finish():  # the workers' run pages
            _warn_and_keep(m)
        timings["run_pages_wait"] = time.perf_counter() - t0
        cache.write_manifest(
            tmp,
            {
                "page_key": page_key,
                "site_key": key,
                "declared_key": declared_key,
                "declared": snap,
                "folders": prints,
                "warnings": warnings,
                "built_at": site["built_at"],
                "n_runs": site["n_runs"],
            },
        )
        _swap(tmp, out, parent)
    except BaseException:
        if results is not None and results.pending is not None:
            results.pending.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        gc.unfreeze()
    timings["total"] = time.perf_counter() - t_start
    rendered = int(model["summary"]["folder"].isin(results.read_folders | todo).sum()) if len(model["summary"]) else 0
    return {
        "n_runs": len(results.runs),
        "n_read": results.n_read,
        "n_reused": results.n_reused,
        "pages_rendered": rendered,
        "pages_reused": reused,
        "unchanged": False,
        "worker_cpu": results.cpu,
        "warnings": warnings,
        "timings": timings,
        "out": out,
    }


def _markdown_only(args) -> int:
    if args.markdown != "-":
        records.check_writable(os.path.dirname(os.path.abspath(args.markdown)))
    pending = declared.Pending() if not declared.loaded() else None
    results = loader.load(args.runs, _warn, jobs=args.jobs)
    md = exports.markdown(compute(results, snap=pending.get() if pending else None))
    if args.markdown == "-":
        sys.stdout.write(md)
    else:
        exports.write_markdown(os.path.abspath(args.markdown), md)
        print(f"wrote {args.markdown}")
    return 0


def cmd_site(args) -> int:
    records.check_local(args.runs, "the site")
    if args.markdown is not None:
        return _markdown_only(args)
    info = build(args.runs, args.out, warn=_warn, jobs=args.jobs, reuse=not args.clean, runs_url=args.runs_url)
    t = info["timings"]
    if info.get("unchanged"):
        print(
            f"site: {info['n_runs']} runs, nothing changed since the last build ({t['total']:.1f} s) "
            f"-> {os.path.join(info['out'], 'index.html')}"
        )
        return 0
    print(
        f"site: {info['n_runs']} runs ({info['n_read']} files read, {info['n_reused']} reused; "
        f"{info['pages_rendered']} run pages rendered, {info['pages_reused']} reused) in {t['total']:.1f} s "
        f"-> {os.path.join(info['out'], 'index.html')}"
    )
    if info["warnings"]:
        print(f"{len(info['warnings'])} warning(s) above; the site lists them too", file=sys.stderr)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "site",
        help="build the static leaderboard site from runs/",
        description="Build the static leaderboard (HTML, inline SVG, no network at view time).",
    )
    p.add_argument("--runs", default="runs", help="results folder (default runs)")
    p.add_argument("--out", default="site", help="site folder, replaced as a whole (default site)")
    p.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="only write the overview as Markdown, to stdout or FILE",
    )
    p.add_argument("--jobs", type=int, default=None, help="processes for reading many run files (default: CPUs)")
    p.add_argument("--clean", action="store_true", help="do not reuse anything from the previous build")
    p.add_argument(
        "--runs-url",
        default=None,
        metavar="URL",
        help="link the raw run files and sweep manifests under this URL (default: the runs folder "
        "relative to --out; on GitHub Actions the runs at the built commit)",
    )
    p.set_defaults(func=cmd_site)
