// rootbench leaderboard: table sorting (click or keyboard), column chooser, scroll cues, filter, figure toggles.
// Plain DOM, no libraries, nothing fetched; the pages read fine without it.
(function () {
  "use strict";
  function each(sel, fn, root) { Array.prototype.forEach.call((root || document).querySelectorAll(sel), fn); }

  // sorting: every header is a button; cells carry their raw value in data-v
  each("table.sortable thead th", function (th) {
    th.setAttribute("aria-sort", "none");
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex, asc = th.dataset.dir !== "asc";
      each("thead th", function (h) { delete h.dataset.dir; h.setAttribute("aria-sort", "none"); }, table);
      th.dataset.dir = asc ? "asc" : "desc";
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var key = function (row) {
        var c = row.cells[i]; if (!c) return null;
        var v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
        var n = parseFloat(v);
        return v === "" ? null : (isNaN(n) || !/^[-+0-9.eE]+$/.test(v) ? v.toLowerCase() : n);
      };
      Array.prototype.slice.call(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
        if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      }).forEach(function (r) { body.appendChild(r); });
    });
  });

  // column chooser: optional columns are hidden until ticked
  each(".colpick input[data-col]", function (box) {
    box.addEventListener("change", function () {
      var wrap = box.closest(".tbl"), i = +box.dataset.col;
      each("tr", function (tr) { var c = tr.cells[i]; if (c) c.classList.toggle("on", box.checked); }, wrap);
      cue(wrap);
    });
  });

  // a visible cue on tables wider than their box
  function cue(wrap) {
    var s = wrap.querySelector(".scroll");
    if (!s) return;
    wrap.classList.toggle("overflowing", s.scrollWidth > s.clientWidth + 1);
    wrap.classList.toggle("at-end", s.scrollLeft + s.clientWidth >= s.scrollWidth - 2);
  }
  each(".tbl", function (wrap) {
    cue(wrap);
    var s = wrap.querySelector(".scroll");
    if (s) s.addEventListener("scroll", function () { cue(wrap); }, { passive: true });
  });
  window.addEventListener("resize", function () { each(".tbl", cue); });
  each("details", function (d) { d.addEventListener("toggle", function () { each(".tbl", cue, d); }); });

  // filter: rows, task sections and forest rows that do not name every typed word step aside
  var filter = document.getElementById("filter");
  function apply() {
    var terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var hit = function (text) { return terms.every(function (t) { return text.indexOf(t) >= 0; }); };
    each(".tbl tbody tr", function (tr) { tr.hidden = terms.length > 0 && !hit(tr.textContent.toLowerCase()); });
    each("section[data-k]", function (s) {
      var rows = s.querySelectorAll("tbody tr"), any = false;
      Array.prototype.forEach.call(rows, function (r) { any = any || !r.hidden; });
      s.hidden = terms.length > 0 && !any && !hit(s.dataset.k.toLowerCase());
    });
    each("g.frow", function (g) { g.classList.toggle("dim", terms.length > 0 && !hit(g.dataset.k.toLowerCase())); });
    each(".tbl", cue);
  }
  if (filter) {
    var q = new URLSearchParams(location.search).get("q");
    if (q) filter.value = q;
    filter.addEventListener("input", apply);
    if (filter.value) apply();
  }

  // figures: an optimizer's lines on or off everywhere on the page; a configuration's curve on or off
  each(".legend input[data-opt]", function (box) {
    box.addEventListener("change", function () {
      each("svg [data-opt]", function (el) {
        if (el.getAttribute("data-opt") === box.dataset.opt) el.classList.toggle("hide-opt", !box.checked);
      });
    });
  });
  each("td input[data-cfg]", function (box) {
    box.addEventListener("change", function () {
      each("svg [data-cfg]", function (el) {
        if (el.getAttribute("data-cfg") === box.dataset.cfg && el.getAttribute("data-opt") === box.dataset.opt)
          el.classList.toggle("off", !box.checked);
      });
      box.closest("tr").classList.toggle("chosen", box.checked);
    });
  });

  // a permalink into a closed <details> opens it
  function reveal() {
    if (!location.hash) return;
    var el = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    for (var p = el; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    if (el) el.scrollIntoView();
  }
  window.addEventListener("hashchange", reveal);
  reveal();
})();
