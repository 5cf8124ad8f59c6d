"""Reusing the previous build: its run and point tables (``leaderboard.load`` takes unchanged folders from them),
its run pages (hard-linked when their folder and everything the pages are made by are unchanged), the registries'
declarations (reused while the files they come from are unchanged), and, when nothing at all changed, the whole
site.

The previous site records what it was built from in ``data/build.json``: the loader's cache version, the
run-page key (``pages.run_pages_key``), each folder's fingerprint, the declarations with their fingerprint,
and the site key (everything together).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from rootbench.leaderboard import load as loader
from rootbench.leaderboard.fmt import config_page, run_page

MANIFEST = os.path.join("data", "build.json")
HERE = os.path.dirname(os.path.abspath(__file__))


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


def data_cache(site: str | None, manifest: dict, page_key: str) -> str | None:
    """The previous build's data folder, if its tables were made the way this code makes them and its run pages
    the way this code writes them (a folder is reused with its pages or read again)."""
    if site and manifest.get("cache_version") == loader.CACHE_VERSION and manifest.get("page_key") == page_key:
        return os.path.join(site, "data")
    return None


def code_key() -> str:
    """A hash of the leaderboard's own code, templates and static files."""
    h = hashlib.sha256()
    for sub in ("", "templates", "static"):
        folder = os.path.join(HERE, sub)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not name.endswith(".pyc"):
                with open(path, "rb") as f:
                    h.update(name.encode() + f.read())
    return h.hexdigest()[:20]


def site_key(folders: dict, page_key: str, declared_key: str, options: dict) -> str:
    """Everything a site is made of: the run folders' fingerprints, the code, the declarations, the options."""
    h = hashlib.sha256(
        json.dumps(
            {
                "folders": sorted(folders.items()),
                "page_key": page_key,
                "code": code_key(),
                "declared": declared_key,
                "cache": loader.CACHE_VERSION,
                **options,
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    return h.hexdigest()[:20]


def write_manifest(out: str, info: dict) -> None:
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump({"cache_version": loader.CACHE_VERSION, **info}, f)


def link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows it (no bytes copied), else a copy."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def reuse_run_pages(summary, out: str, previous: str | None, read_folders: set) -> tuple[int, set]:
    """Link the run pages of the folders that were not read again (their fingerprint and the page key matched)
    from the previous site into ``out``; returns (pages reused, folders whose pages are missing there)."""
    reused, todo = 0, set()
    if not len(summary):
        return 0, todo
    cols = [summary[c].astype(str) for c in ("folder", "run_id", "tier", "task", "optimizer", "config_id")]
    linked = set()
    for folder, rid, *key in zip(*cols):
        if folder in read_folders:
            continue
        rels = [run_page(rid), config_page(*key)]
        srcs = [os.path.join(previous, rel) if previous else None for rel in rels]
        if all(src and os.path.exists(src) for src in srcs):
            for rel, src in zip(rels, srcs):
                if rel not in linked:
                    link_or_copy(src, os.path.join(out, rel))
                    linked.add(rel)
            reused += 1
        else:
            todo.add(folder)
    return reused, todo
