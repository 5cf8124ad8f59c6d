"""Reusing the previous build: its run and point tables (``leaderboard.load`` reads unchanged files from
them) and its run pages (hard-linked when the run and everything its page is made by are unchanged).

The previous site records what it was built from in ``data/build.json``: the loader's cache version, the
run-page key (``pages.run_pages_key``) and each run page's file fingerprint.
"""
from __future__ import annotations

import json
import os
import shutil

from rootbench.leaderboard import load as loader
from rootbench.leaderboard.fmt import run_page

MANIFEST = os.path.join("data", "build.json")


def read_manifest(site: str | None) -> dict:
    """The previous build's manifest; {} when there is none or it is unreadable (then nothing is reused)."""
    if not site or not os.path.exists(os.path.join(site, MANIFEST)):
        return {}
    try:
        with open(os.path.join(site, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def data_cache(site: str | None, manifest: dict) -> str | None:
    """The previous build's data folder, if its tables were made the way this code makes them."""
    if site and manifest.get("cache_version") == loader.CACHE_VERSION:
        return os.path.join(site, "data")
    return None


def write_manifest(out: str, key: str, pages: dict, site: dict) -> None:
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump({"cache_version": loader.CACHE_VERSION, "template_hash": key, "pages": pages,
                   "built_at": site["built_at"], "n_runs": site["n_runs"]}, f)


def link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows it (no bytes copied), else a copy."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def reuse_run_pages(summary, out: str, previous: str | None, manifest: dict, key: str,
                    done: set) -> tuple[dict, list[str], int]:
    """Link the unchanged run pages of the previous site into ``out``.

    Returns (run id -> fingerprint for the new manifest, run ids still to render, pages reused); runs in
    ``done`` were rendered by the loader already.
    """
    old = manifest.get("pages", {}) if manifest.get("template_hash") == key else {}
    pages, todo, reused = {}, [], 0
    for rid, fp in zip(summary["run_id"].astype(str), summary["fingerprint"].astype(str)):
        pages[rid] = fp
        if rid in done:
            continue
        rel = run_page(rid)
        src_old = os.path.join(previous, rel) if previous else None
        if previous and old.get(rid) == fp and os.path.exists(src_old):
            link_or_copy(src_old, os.path.join(out, rel))
            reused += 1
        else:
            todo.append(rid)
    return pages, todo, reused
