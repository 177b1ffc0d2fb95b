"""The dashboard's page and its script: plain text served from memory, no file read.

The page loads plotly.js and its own script from the dashboard itself and fetches only
`/api/data`; the Content-Security-Policy stops every other request. Everything read from
the workspace is set with `textContent` (never as markup), and plotly gets the report's
figures, whose strings are already escaped.
"""

from __future__ import annotations

from cra.report.page import STYLE

META_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; font-src 'self' data:; base-uri 'none'; "
    "form-action 'none'"
)
"""The policy the page itself states; the header adds what a `<meta>` cannot carry."""

CSP = f"{META_CSP}; frame-ancestors 'none'"

POLL_MS = 2000
"""The page asks for new data this often (and the server holds a request up to
`WAIT_S` seconds while nothing changes)."""

WAIT_S = 2.0

EXTRA_STYLE = """
#live { border: 2px solid #4a7; padding: 0.5rem 1rem; border-radius: 6px; }
#live progress { width: 20rem; } #status { color: #a33; } #history { font-size: 0.8rem; }
"""

PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{META_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cra dashboard</title><style>{STYLE}{EXTRA_STYLE}</style>
<script src="/plotly.min.js"></script>
</head><body>
<h1>cra dashboard</h1>
<p id="status"></p>
<section id="now"><h2>Now</h2><div id="live"><p class="empty">Loading…</p></div>
<details><summary>What changed while this page was open</summary><ol id="history"></ol></details>
</section>
<div id="views"></div>
<script src="/dashboard.js"></script>
</body></html>
"""

SCRIPT = """
(function () {
  "use strict";
  var POLL_MS = __POLL_MS__, WAIT_S = __WAIT_S__, views = -1, token = "", polls = 0;
  var body = document.body;
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function bar(value, max) {
    var p = document.createElement("progress");
    p.max = max; p.value = Math.min(value, max);
    return p;
  }
  function loopLines(box, l) {
    var cycle = l.cycle ? "cycle " + l.cycle + (l.max_cycles ? " of " + l.max_cycles : "")
      : "no cycle yet";
    var head = "Loop run " + l.run + " " + l.status + ": " + cycle +
      (l.repo ? " on " + l.repo : "") +
      (l.stop_reason ? " (stopped: " + l.stop_reason + ")" : "");
    var p = el("p", head); p.id = "loop-cycle"; p.setAttribute("data-cycle", String(l.cycle));
    box.appendChild(p);
    if (l.max_cycles) { box.appendChild(bar(l.cycle, l.max_cycles)); }
    if (l.step) {
      var of = l.steps_per_cycle ? " of " + l.steps_per_cycle : "";
      var s = el("p", "step " + l.step_position + of + ": " + l.step + " (" + l.step_status + ")");
      s.id = "loop-step"; s.setAttribute("data-step", l.step);
      box.appendChild(s);
      if (l.steps_per_cycle) { box.appendChild(bar(l.step_position, l.steps_per_cycle)); }
    }
    var list = el("ul");
    l.steps.forEach(function (st) {
      var why = st.reason ? " (" + st.reason + ")" : "";
      list.appendChild(el("li", st.step + ": " + st.status + why));
    });
    box.appendChild(list);
  }
  function summary(live) {
    var parts = [];
    var l = live.loop;
    if (l) { parts.push("loop " + l.run + " cycle " + l.cycle + " " + (l.step || "")); }
    if (live.harness) { parts.push(live.harness.label + " " + live.harness.status); }
    if (live.training) { parts.push(live.training.run_id + " step " + live.training.step); }
    return parts.join(" · ") || "nothing recorded";
  }
  function renderLive(live) {
    var box = document.getElementById("live");
    box.replaceChildren();
    if (live.loop) { loopLines(box, live.loop); }
    if (live.harness) {
      var h = live.harness;
      var p = el("p", "Harness run " + h.label + " " + h.status + (h.repo ? " on " + h.repo : "") +
        ", started " + h.started_at + (h.finished_at ? ", ended " + h.finished_at : "") +
        (h.error ? " (" + h.error + ")" : ""));
      p.id = "harness-run"; p.setAttribute("data-run", h.label);
      box.appendChild(p);
    }
    if (live.training) {
      var t = live.training;
      var q = el("p", "Training " + t.run_id + " (" + t.adapter + ", " + t.method + "): step " +
        t.step + (t.loss !== null ? ", loss " + t.loss : "") + ", at " + t.created_at);
      q.id = "training-run";
      box.appendChild(q);
    }
    if (!live.loop && !live.harness && !live.training) {
      box.appendChild(el("p", "Nothing is running and nothing has been recorded yet.", "empty"));
    }
    box.appendChild(el("p", "read " + live.read_at, "empty"));
  }
  function section(s, pending) {
    var sec = el("section"); sec.id = s.key;
    sec.appendChild(el("h2", s.title));
    s.notes.forEach(function (n) { sec.appendChild(el("p", n)); });
    if (s.is_empty && !s.notes.length) {
      var p = el("p", "Nothing recorded yet: run ", "empty");
      p.appendChild(el("code", s.empty));
      sec.appendChild(p);
    }
    s.charts.forEach(function (c) {
      var d = el("div", null, "chart"); d.id = c.id;
      d.setAttribute("data-points", JSON.stringify(c.points));
      sec.appendChild(d); pending.push([d, c.figure]);
    });
    s.tables.forEach(function (t) {
      var table = el("table"), head = el("tr"), tbody = el("tbody"), thead = el("thead");
      table.appendChild(el("caption", t.caption));
      t.headers.forEach(function (h) { head.appendChild(el("th", h)); });
      thead.appendChild(head); table.appendChild(thead);
      t.rows.forEach(function (r) {
        var tr = el("tr");
        r.forEach(function (c) { tr.appendChild(el("td", c === null ? "" : c)); });
        tbody.appendChild(tr);
      });
      table.appendChild(tbody); sec.appendChild(table);
      if (t.more) { sec.appendChild(el("p", t.more + " more rows not shown", "empty")); }
    });
    return sec;
  }
  function renderViews(sections) {
    var root = document.getElementById("views"), pending = [];
    var old = root.querySelectorAll(".chart");
    Array.prototype.forEach.call(old, function (d) { Plotly.purge(d); });
    root.replaceChildren();
    sections.forEach(function (s) { root.appendChild(section(s, pending)); });
    return Promise.all(pending.map(function (p) {
      return Plotly.newPlot(p[0], p[1].data, p[1].layout, {displaylogo: false, responsive: true});
    }));
  }
  function apply(d) {
    var status = d.error ? "views not refreshed: " + d.error : "";
    document.getElementById("status").textContent = status;
    if (d.live_token !== token) {
      token = d.live_token;
      renderLive(d.live);
      var history = document.getElementById("history");
      history.appendChild(el("li", d.live.read_at + ": " + summary(d.live)));
      while (history.children.length > 50) { history.removeChild(history.firstChild); }
      body.setAttribute("data-changes", String(history.children.length));
    }
    if (!d.views) { return null; }
    return renderViews(d.views).then(function () {
      views = d.views_version;
      body.setAttribute("data-views-version", String(views));
      var charts = d.views.reduce(function (n, s) { return n + s.charts.length; }, 0);
      body.setAttribute("data-rendered", String(charts));
    });
  }
  function poll() {
    var url = "/api/data?since=" + views + "&live=" + encodeURIComponent(token) +
      "&wait=" + (polls ? WAIT_S : 0);
    fetch(url, {cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(apply)
      .catch(function (e) {
        var text = "cannot reach the dashboard (" + e.message + "), retrying";
        document.getElementById("status").textContent = text;
      })
      .then(function () {
        polls += 1;
        body.setAttribute("data-polls", String(polls));
        setTimeout(poll, POLL_MS);
      });
  }
  poll();
})();
""".replace("__POLL_MS__", str(POLL_MS)).replace("__WAIT_S__", str(WAIT_S))
