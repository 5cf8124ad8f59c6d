"""The site built from the committed runs, in headless Chromium (over DevTools, as ``test_leaderboard.py`` does):
the front page answers first (the verdict block, then a forest plot with one row per comparable pair), a task page
draws each declared pair in one colour with the root-free side dashed, no table is wider than the page at 1400 px
without a visible cue, headers stick and sort from the keyboard, and a phone gets a page that fits.

Skips cleanly without Chromium (Debian: ``apt-get install chromium``) or ``websocket-client``.
"""

from __future__ import annotations

import functools
import pathlib
import threading
from http.server import ThreadingHTTPServer

import pytest

from rootbench.leaderboard import build as site_build
from rootbench.leaderboard import load as site_load
from rootbench.leaderboard import model as site_model
from tests.test_leaderboard import _chromium, _DevTools, _Quiet, run_page

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs"
TIER = "quick"
FOREST = f"#fig--forest-{TIER} svg.plot-forest"  # the tier's own forest (each tier with results has one)
TASK_PAGE = "tasks/cifar10-vit--quick.html"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    if not list(RUNS.glob("*/*/*.parquet")):
        pytest.skip("no committed runs in this checkout")
    out = str(tmp_path_factory.mktemp("committed") / "site")
    info = site_build.build(str(RUNS), out, warn=lambda m: None)
    model = site_model.compute(site_load.load(str(RUNS)), snap=None)
    return out, info, model


@pytest.fixture(scope="module")
def browser(committed, tmp_path_factory):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); the browser checks need one")
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium's DevTools")
    out = committed[0]
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=out))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    b = _DevTools(binary, str(tmp_path_factory.mktemp("profile")))
    b.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield b
    finally:
        b.close()
        server.shutdown()


def _at(b, width: int, page: str):
    b.call("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=width < 500)
    b.open(f"{b.base}/{page}")
    assert b.errors() == [], page


def test_front_page_answers_with_the_verdict_and_one_forest_row_per_pair(browser, committed):
    _, _, model = committed
    cmp = model["comparisons"]
    expected = cmp[cmp["tier"] == TIER]
    assert len(expected) == 18  # three declared pairs on the six tasks where both sides ran
    _at(browser, 1400, "index.html")
    b = browser
    assert b.js("!!document.querySelector('#verdict-quick table.claims')")
    assert b.js("document.querySelectorAll('#verdict-quick table.claims tbody tr').length") == 3  # claims 1-3
    first = b.js("""(function () {var v = document.querySelector('.verdict').getBoundingClientRect().top;
        var t = document.querySelector('section.task').getBoundingClientRect().top; return v < t;})()""")
    assert first, "the verdict comes before the per-task tables"
    rows = b.js(f"Array.from(document.querySelectorAll('{FOREST} g.frow')).map(g => g.dataset.k)")
    assert sorted(rows) == sorted(f"{r['task']} {r['root']} {r['free']}" for r in expected.to_dict("records"))
    colours = b.js(f"""Array.from(document.querySelectorAll('{FOREST} g.frow')).map(g =>
        [g.dataset.direction, g.querySelector('circle').getAttribute('fill')])""")
    by_direction = {}
    for direction, fill in colours:
        by_direction.setdefault(direction, set()).add(fill)
    assert all(len(f) == 1 for f in by_direction.values()) and len(by_direction) >= 2  # coloured by direction
    for r in expected.to_dict("records"):  # each row links to its comparison, which has an anchor
        assert b.js(f"!!document.querySelector('svg.plot-forest a[href=\"pairs.html#{r['anchor']}\"]')")
    # the filter narrows the page to what is typed
    b.js("var f = document.getElementById('filter'); f.value = 'cifar10-vit'; f.dispatchEvent(new Event('input'))")
    assert b.js(f"document.querySelectorAll('{FOREST} g.frow:not(.dim)').length") == 3
    shown = b.js("Array.from(document.querySelectorAll('section.task')).filter(s => !s.hidden).map(s => s.dataset.k)")
    assert shown and set(shown) == {"cifar10-vit"}  # its section on each tier that compares it, nothing else
    assert b.js(f"document.querySelectorAll('#tier-{TIER} section.task:not([hidden])').length") == 1


def test_task_page_pairs_share_a_colour_and_tables_fit_or_say_so(browser, committed):
    _, _, model = committed
    _at(browser, 1400, TASK_PAGE)
    b = browser
    strokes = b.js("""(function () { var out = {};
        document.querySelectorAll('svg.plot-panel polyline[data-opt]').forEach(function (p) {
          var o = p.getAttribute('data-opt'); out[o] = out[o] || [];
          out[o].push([getComputedStyle(p).stroke, !!p.getAttribute('stroke-dasharray')]); });
        return out; })()""")
    ran = set(strokes)
    pairs = [(r, f) for r, f in model["pairs"] if r in ran and f in ran]
    assert len(pairs) == 3
    for root, free in pairs:
        assert {s for s, _ in strokes[root]} == {s for s, _ in strokes[free]}  # one colour per declared pair
        assert not any(d for _, d in strokes[root]) and all(d for _, d in strokes[free])  # root-free dashed
    assert len({strokes[r][0][0] for r, _ in pairs}) == 3  # three pairs, three colours
    width = b.js("document.documentElement.clientWidth")
    assert b.js("document.documentElement.scrollWidth") <= width  # the page itself never scrolls sideways
    tables = b.js(f"""Array.from(document.querySelectorAll('.tbl')).map(function (w) {{
        var t = w.querySelector('table').getBoundingClientRect(), s = w.querySelector('.scroll');
        var cue = w.querySelector('.scroll-cue');
        return {{id: w.id, fits: t.width <= Math.min({width}, s.clientWidth + 1),
                 cue: getComputedStyle(cue).display !== 'none' && cue.getBoundingClientRect().height > 0}}; }})""")
    assert tables and all(t["fits"] or t["cue"] for t in tables), tables
    # the sticky header of the long configurations table stays at the top of its box while it scrolls
    top = b.js("""(function () { var s = document.querySelector('[id^="configs"] .scroll');
        s.scrollTop = 600; var th = s.querySelector('thead th');
        return [s.scrollTop, Math.round(th.getBoundingClientRect().top - s.getBoundingClientRect().top)]; })()""")
    assert top[0] > 0 and abs(top[1]) <= 2, top
    # sorting from the keyboard: a header is a button
    b.js("document.querySelector('[id^=\"configs\"] thead th:nth-child(6) button').focus()")
    assert b.js("document.activeElement.tagName") == "BUTTON"
    b.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r")
    b.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
    assert (
        b.js("document.querySelector('[id^=\"configs\"] thead th:nth-child(6)').getAttribute('aria-sort')")
        == "ascending"
    )
    # ticking a configuration draws its validation curve
    hidden = b.js("document.querySelectorAll('svg polyline.cfg.off').length")
    b.js("var c = document.querySelector('tr:not(.chosen) input[data-cfg]'); c.click();")
    assert b.js("document.querySelectorAll('svg polyline.cfg.off').length") == hidden - 1


def test_a_phone_gets_pages_that_fit_and_readable_figures(browser):
    b = browser
    for page in ("index.html", TASK_PAGE, "pairs.html", "across.html"):
        _at(b, 390, page)
        assert b.js("document.documentElement.scrollWidth") <= 390, page
    _at(b, 390, "index.html")
    smallest = b.js("""Math.min.apply(null, Array.from(document.querySelectorAll('svg.plot-forest text'))
        .map(t => t.getBoundingClientRect().height).filter(h => h > 0))""")
    assert smallest >= 8, smallest  # figure text no smaller than ~8 px (the forest scrolls sideways instead)
    # the answer columns of a comparison are within reach: the direction is on screen without scrolling
    _at(b, 390, "pairs.html")
    right = b.js("""document.querySelector('[id^="comparisons"] tbody tr td:nth-child(2)').getBoundingClientRect()
        .right""")
    assert 0 < right <= 390


def test_run_pages_link_their_seeds_manifest_and_command(committed):
    out, _, model = committed
    s = model["summary"]
    seeds_of = _manifest_seed_ids()
    seeded = s[s["run_id"].astype(str).isin(seeds_of)].iloc[0]
    section, html = run_page(out, seeded["run_id"])
    assert "sweep " in html and "seed" in html and "/sweeps/" in html  # its manifest, linked not copied
    assert f"--seed {int(seeded['seed'])} --precision {seeded['precision']}" in section
    assert 'class="plot plot-run"' in html  # curves on the run's page
    siblings = s[
        (s["config_id"] == seeded["config_id"])
        & (s["optimizer"] == seeded["optimizer"])
        & (s["task"] == seeded["task"])
    ]
    assert len(siblings) == seeds_of[str(seeded["run_id"])]  # every seed its sweep reran
    for rid in siblings["run_id"]:  # its sibling seeds, on the same page
        assert f'<a href="#run--{rid}">{rid}</a>' in html


def _manifest_seed_ids() -> dict:
    """{run id: how many seeds its sweep reran} for every seed run a committed manifest lists."""
    import json

    ids = {}
    for path in RUNS.glob("sweeps/*/*/*.json"):
        m = json.loads(path.read_text())
        seeds = [x["run_id"] for x in m.get("seeds") or [] if x.get("run_id")]
        ids.update({rid: len(seeds) for rid in seeds})
    return ids
