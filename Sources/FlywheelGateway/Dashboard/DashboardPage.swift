/// The dashboard: one self-contained page (no external assets: inline CSS, inline SVG charts drawn by inline
/// JavaScript) fed by `/dashboard/events` (server-sent events, a snapshot a second), falling back to polling
/// `/dashboard/data`. Every text from the log is set with `textContent`, never as HTML.
enum DashboardPage {
    static let html = #"""
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><title>Flywheel</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>
    :root { --ink:#1d2430; --muted:#6b7280; --line:#e5e7eb; --ok:#2e7d32; --warn:#ef6c00; --alert:#c62828; --a:#2563eb; --b:#9333ea; --c:#0891b2; --d:#ca8a04; }
    body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 0; color: var(--ink); background: #f8fafc; }
    header { display:flex; align-items:baseline; gap:1.5em; padding: 14px 24px; background:#fff; border-bottom:1px solid var(--line); }
    header h1 { font-size: 20px; margin: 0; }
    #status { color: var(--muted); font-size: 13px; }
    main { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 24px; }
    section { background:#fff; border:1px solid var(--line); border-radius:8px; padding: 12px 16px; }
    section h2 { font-size: 14px; margin: 0 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
    .cards { display:flex; gap: 24px; flex-wrap: wrap; }
    .card b { display:block; font-size: 26px; font-variant-numeric: tabular-nums; }
    .card span { color: var(--muted); font-size: 12px; }
    table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
    th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
    td.num, th.num { text-align: right; }
    .wide { grid-column: 1 / -1; }
    .legend { font-size: 12px; color: var(--muted); margin-top: 4px; }
    .legend i { display:inline-block; width:10px; height:10px; margin: 0 4px 0 10px; border-radius:2px; }
    .s2 { color: var(--alert); font-weight: 600; } .s1 { color: var(--warn); } .s0 { color: var(--ok); }
    .err { color: var(--alert); }
    svg { width: 100%; height: 160px; display:block; }
    section { overflow: hidden; }
    #outliers td:last-child, #tail td:nth-child(2) { white-space: normal; word-break: break-all; }
    </style></head>
    <body>
    <header><h1>Flywheel</h1><span id="status">connecting…</span></header>
    <main>
    <section class="wide"><div class="cards">
      <div class="card"><b id="c-rps">–</b><span>requests / s (last 10 s)</span></div>
      <div class="card"><b id="c-total">–</b><span>requests since start</span></div>
      <div class="card"><b id="c-errors">–</b><span>error rate since start</span></div>
      <div class="card"><b id="c-inflight">–</b><span>in flight</span></div>
      <div class="card"><b id="c-cost">–</b><span>cost, last hour</span></div>
      <div class="card"><b id="c-saved">–</b><span>saved by local answers, last hour</span></div>
    </div></section>
    <section><h2>Requests per second by route</h2><svg id="chart-rps" role="img" aria-label="requests per second"></svg><div class="legend" id="legend-rps"></div></section>
    <section><h2>Latency of recent requests (ms)</h2><svg id="chart-latency" role="img" aria-label="latency"></svg><div class="legend" id="legend-latency"></div></section>
    <section class="wide"><h2>Models and routes</h2><table id="routes"><thead><tr><th>model</th><th>route</th><th>variant</th>
      <th class="num">requests (1 h)</th><th class="num">errors</th><th class="num">p50 ms</th><th class="num">acceptance</th><th class="num">tokens in / out</th><th class="num">cost $</th><th class="num">saved $</th></tr></thead><tbody></tbody></table>
      <div class="legend" id="routes-note"></div></section>
    <section><h2>Drift</h2><svg id="chart-drift" role="img" aria-label="drift scores"></svg><div class="legend" id="legend-drift"></div></section>
    <section><h2>Recent outliers</h2><table id="outliers"><thead><tr><th class="num">score</th><th>request</th><th>why</th></tr></thead><tbody></tbody></table></section>
    <section class="wide"><h2>Live tail</h2><table id="tail"><thead><tr><th>time</th><th>request</th><th>model</th><th>route</th><th>variant</th>
      <th class="num">status</th><th class="num">ms</th><th class="num">tokens</th><th class="num">cost $</th></tr></thead><tbody></tbody></table></section>
    </main>
    <script>
    "use strict";
    const COLORS = ["#2563eb", "#9333ea", "#0891b2", "#ca8a04", "#16a34a", "#db2777", "#64748b"];
    const history = [];          // {t, perRoute: {route: count}, latency: {route: {p50, p95}}}
    const SVGNS = "http://www.w3.org/2000/svg";
    const $ = (id) => document.getElementById(id);

    function text(el, value) { el.textContent = value; return el; }
    function cell(row, value, cls) { const td = document.createElement("td"); if (cls) td.className = cls; text(td, value); row.appendChild(td); return td; }
    function fmt(n, d) { return n == null ? "–" : Number(n).toFixed(d); }

    function lineChart(svg, legend, series, yLabel) {
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      while (legend.firstChild) legend.removeChild(legend.firstChild);
      const w = svg.clientWidth || 400, h = svg.clientHeight || 160, pad = 28;
      let max = 0, n = 0;
      for (const s of series) { for (const v of s.values) { if (v != null && v > max) max = v; } n = Math.max(n, s.values.length); }
      if (max === 0) max = 1;
      const axis = document.createElementNS(SVGNS, "text");
      axis.setAttribute("x", 2); axis.setAttribute("y", 12); axis.setAttribute("font-size", "10"); axis.setAttribute("fill", "#6b7280");
      axis.textContent = fmt(max, max < 10 ? 2 : 0) + " " + yLabel;
      svg.appendChild(axis);
      const base = document.createElementNS(SVGNS, "line");
      base.setAttribute("x1", pad); base.setAttribute("x2", w - 4); base.setAttribute("y1", h - 14); base.setAttribute("y2", h - 14);
      base.setAttribute("stroke", "#e5e7eb"); svg.appendChild(base);
      series.forEach((s, i) => {
        const pts = [];
        s.values.forEach((v, j) => {
          if (v == null) return;
          const x = pad + (n <= 1 ? 0 : j * (w - pad - 4) / (n - 1));
          const y = (h - 14) - v / max * (h - 30);
          pts.push(x.toFixed(1) + "," + y.toFixed(1));
        });
        const path = document.createElementNS(SVGNS, "polyline");
        path.setAttribute("points", pts.join(" ")); path.setAttribute("fill", "none");
        path.setAttribute("stroke", s.color || COLORS[i % COLORS.length]); path.setAttribute("stroke-width", "2");
        path.setAttribute("class", "series"); path.setAttribute("data-name", s.name);
        svg.appendChild(path);
        const swatch = document.createElement("i"); swatch.style.background = s.color || COLORS[i % COLORS.length];
        legend.appendChild(swatch); legend.appendChild(document.createTextNode(s.name));
      });
    }

    function render(snap) {
      const now = snap.at;
      const perRoute = {};
      for (const r of snap.routes) perRoute[r.route] = (perRoute[r.route] || 0) + r.requests;
      history.push({ t: now, perRoute, latency: snap.latency_ms, total: snap.requests });
      while (history.length > 300) history.shift();

      // Cards.
      const back = history.find((h) => now - h.t <= 10000) || history[0];
      const seconds = Math.max(1, (now - back.t) / 1000);
      text($("c-rps"), fmt((snap.requests - back.total) / seconds, 1));
      text($("c-total"), snap.requests);
      let reqs = 0, errs = 0;
      for (const r of snap.routes) { reqs += r.requests; errs += r.errors; }
      text($("c-errors"), reqs ? fmt(100 * errs / reqs, 1) + "%" : "–");
      text($("c-inflight"), snap.in_flight);
      const total = snap.report && snap.report.total;
      text($("c-cost"), total ? "$" + fmt(total.cost_usd, 4) : "–");
      text($("c-saved"), total ? "$" + fmt(total.saved_usd, 4) : "–");

      // Requests per second per route, from the counters' differences.
      const routes = Object.keys(perRoute).sort();
      const rps = routes.map((route, i) => ({ name: route, values: history.map((h, j) => {
        if (j === 0) return null;
        const prev = history[j - 1], dt = Math.max(0.001, (h.t - prev.t) / 1000);
        return Math.max(0, ((h.perRoute[route] || 0) - (prev.perRoute[route] || 0)) / dt);
      }) }));
      lineChart($("chart-rps"), $("legend-rps"), rps, "req/s");

      const lat = [];
      for (const route of Object.keys(snap.latency_ms).sort()) {
        lat.push({ name: route + " p50", values: history.map((h) => h.latency[route] ? h.latency[route].p50 : null) });
        lat.push({ name: route + " p95", values: history.map((h) => h.latency[route] ? h.latency[route].p95 : null) });
      }
      lineChart($("chart-latency"), $("legend-latency"), lat, "ms");

      // Models and routes: the log's last hour when the daemon has computed it, else the live counters.
      const body = $("routes").tBodies[0];
      while (body.firstChild) body.removeChild(body.firstChild);
      if (snap.report && snap.report.rows) {
        for (const r of snap.report.rows) {
          const tr = body.insertRow();
          cell(tr, r.model); cell(tr, r.route); cell(tr, r.variant || "–");
          cell(tr, r.requests, "num"); cell(tr, fmt(100 * r.error_rate, 1) + "%", "num" + (r.errors ? " err" : ""));
          cell(tr, fmt(r.latency_ms.p50, 0), "num");
          const acc = r.feedback.acceptance_rate;
          cell(tr, acc == null ? "–" : fmt(100 * acc, 0) + "% of " + (r.feedback.accepted + r.feedback.rejected + r.feedback.edited), "num");
          cell(tr, r.prompt_tokens + " / " + r.completion_tokens, "num");
          cell(tr, fmt(r.cost_usd, 4), "num"); cell(tr, r.route === "local" ? fmt(r.saved_usd, 4) : "–", "num");
        }
        text($("routes-note"), "From the log, last hour; refreshed every few seconds.");
      } else {
        for (const r of snap.routes) {
          const tr = body.insertRow();
          cell(tr, r.model); cell(tr, r.route); cell(tr, "–"); cell(tr, r.requests, "num");
          cell(tr, reqs ? fmt(100 * r.errors / Math.max(1, r.requests), 1) + "%" : "–", "num");
          const l = snap.latency_ms[r.route]; cell(tr, l ? fmt(l.p50, 0) : "–", "num");
          cell(tr, "–", "num"); cell(tr, "–", "num"); cell(tr, "–", "num"); cell(tr, "–", "num");
        }
        text($("routes-note"), "Live counters since start (the log's figures appear once computed).");
      }

      // Drift scores over time.
      if (snap.drift && snap.drift.history.length) {
        const names = Object.keys(snap.drift.history[snap.drift.history.length - 1].scores).sort();
        lineChart($("chart-drift"), $("legend-drift"),
                  names.map((name) => ({ name, values: snap.drift.history.map((h) => h.scores[name] == null ? null : h.scores[name]) })), "score");
        const last = snap.drift.history[snap.drift.history.length - 1];
        const verdict = document.createElement("b"); verdict.className = "s" + last.status;
        text(verdict, " now: " + (last.status < 0 ? "not judged (too few requests)" : ["ok", "warn", "alert"][last.status]));
        $("legend-drift").appendChild(verdict);
      } else {
        text($("legend-drift"), "No drift check yet (configure a drift section).");
      }

      const ob = $("outliers").tBodies[0];
      while (ob.firstChild) ob.removeChild(ob.firstChild);
      for (const o of (snap.outliers || []).slice(0, 10)) {
        const tr = ob.insertRow();
        cell(tr, fmt(o.score, 2), "num"); cell(tr, o.id); cell(tr, (o.reasons || []).join("; "));
      }

      const tb = $("tail").tBodies[0];
      while (tb.firstChild) tb.removeChild(tb.firstChild);
      for (const e of snap.tail) {
        const tr = tb.insertRow();
        cell(tr, new Date(e.at).toLocaleTimeString()); cell(tr, e.id); cell(tr, e.model); cell(tr, e.route); cell(tr, e.variant || "–");
        cell(tr, e.status, "num" + (e.status >= 400 ? " err" : "")); cell(tr, fmt(e.latency_ms, 1), "num"); cell(tr, e.tokens, "num");
        cell(tr, e.cost_usd == null ? "–" : fmt(e.cost_usd, 6), "num");
      }
      text($("status"), "live · " + new Date(now).toLocaleTimeString() + " · " + snap.open_connections + " connections");
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      document.body.dataset.requests = String(snap.requests);
    }

    function poll() {
      fetch("dashboard/data" + location.search, { cache: "no-store" }).then((r) => r.json()).then(render)
        .catch(() => text($("status"), "disconnected; retrying")).finally(() => setTimeout(poll, 2000));
    }

    if (window.EventSource) {
      const events = new EventSource("dashboard/events" + location.search);
      events.onmessage = (e) => render(JSON.parse(e.data));
      events.onerror = () => text($("status"), "reconnecting…");
    } else {
      poll();
    }
    </script>
    </body></html>
    """#
}
