// cognito-streams pipeline health: fetches api/health, draws the numbers and the charts (SVG, drawn
// here: no library, no CDN, nothing inline, so the page runs under a strict Content-Security-Policy),
// and refreshes every 30 s while open. Data is only ever put in the page with textContent.
"use strict";

(function () {
  const REFRESH_MS = 30000;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 560, H = 210, M = { left: 58, right: 12, top: 16, bottom: 30 };
  let hours = 24;
  let last = null; // the last JSON document
  let fetchedAt = null;

  function $(sel) { return document.querySelector(sel); }
  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    const s = Math.abs(seconds);
    if (s < 1) return seconds.toFixed(2) + " s";
    if (s < 90) return seconds.toFixed(s < 10 ? 1 : 0) + " s";
    if (s < 5400) return (seconds / 60).toFixed(1) + " min";
    if (s < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " days";
  }
  function num(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    if (a >= 10 || Number.isInteger(v)) return v.toFixed(0);
    return v.toFixed(a >= 1 ? 1 : 2);
  }
  function utc(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "–"; }
  function ago(iso, now) {
    if (!iso) return "never";
    return duration((now - Date.parse(iso)) / 1000) + " ago";
  }
  function setField(name, text, cls) {
    for (const node of document.querySelectorAll('[data-field="' + name + '"]')) {
      node.textContent = text;
      node.classList.remove("bad", "ok", "warn");
      if (cls) node.classList.add(cls);
    }
  }

  // --- charts ---------------------------------------------------------------------------------------
  const STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];
  function timeTicks(t0, t1) {
    const span = (t1 - t0) / 1000;
    const step = STEPS.find((s) => span / s <= 7) || 172800;
    const out = [];
    let t = Math.ceil(t0 / 1000 / step) * step;
    for (; t * 1000 <= t1; t += step) out.push(t * 1000);
    return { ticks: out, step };
  }
  function timeLabel(ms, step) {
    const d = new Date(ms);
    const hh = String(d.getUTCHours()).padStart(2, "0"), mm = String(d.getUTCMinutes()).padStart(2, "0");
    const day = String(d.getUTCMonth() + 1).padStart(2, "0") + "-" + String(d.getUTCDate()).padStart(2, "0");
    if (step >= 86400) return day;
    if (step >= 21600 || (d.getUTCHours() === 0 && d.getUTCMinutes() === 0)) return day + " " + hh + ":" + mm;
    return hh + ":" + mm;
  }
  // The top of the y axis: four equal steps of 1, 2, 2.5 or 5 times a power of ten (ticks stay round).
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const step = v / 4;
    const p = Math.pow(10, Math.floor(Math.log10(step)));
    for (const m of [1, 2, 2.5, 5, 10]) if (step <= m * p) return 4 * m * p;
    return 40 * p;
  }

  function lineChart(figure, series, t0, t1) {
    const plot = figure.querySelector(".plot");
    clear(plot);
    const lines = (series || []).map((s) => ({
      name: s.name, unit: s.unit,
      pts: s.points.map(([t, v]) => [Date.parse(t), v]).filter(([t]) => t >= t0 && t <= t1),
    }));
    const total = lines.reduce((n, l) => n + l.pts.length, 0);
    figure.dataset.points = String(total);
    figure.dataset.series = String(lines.length);
    const unit = lines.length ? lines[0].unit : "";
    figure.dataset.unit = unit;
    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "plot-svg", role: "img",
      "aria-label": figure.querySelector("figcaption").textContent + " (" + unit + ")" });
    const x = (t) => M.left + (W - M.left - M.right) * (t - t0) / Math.max(1, t1 - t0);
    const top = niceMax(Math.max(0, ...lines.flatMap((l) => l.pts.map((p) => p[1]))));
    const y = (v) => H - M.bottom - (H - M.top - M.bottom) * (v / top);
    for (let i = 0; i <= 4; i++) {
      const v = top * i / 4;
      svg.appendChild(el("svg:line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: i ? "grid" : "axis" }));
      svg.appendChild(el("svg:text", { x: M.left - 5, y: y(v) + 4, "text-anchor": "end" }, num(v)));
    }
    svg.appendChild(el("svg:text", { x: 4, y: 11 }, unit));
    const { ticks, step } = timeTicks(t0, t1);
    for (const t of ticks) {
      svg.appendChild(el("svg:line", { x1: x(t), x2: x(t), y1: H - M.bottom, y2: H - M.bottom + 4, class: "axis" }));
      svg.appendChild(el("svg:text", { x: x(t), y: H - M.bottom + 16, "text-anchor": "middle" }, timeLabel(t, step)));
    }
    svg.appendChild(el("svg:text", { x: W - M.right, y: H - 2, "text-anchor": "end" }, "UTC"));
    if (!total) {
      svg.appendChild(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
        "no data in this window yet"));
    }
    lines.forEach((l, i) => {
      const cls = "c" + (i % 8);
      if (l.pts.length > 1) {
        const d = l.pts.map((p, j) => (j ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
        svg.appendChild(el("svg:path", { d, class: "line " + cls, "data-series": l.name }));
      }
      if (l.pts.length <= 80) {
        for (const [t, v] of l.pts) {
          const dot = el("svg:circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: cls });
          dot.appendChild(el("svg:title", {}, l.name + ": " + num(v) + " " + l.unit + " at " + utc(new Date(t).toISOString())));
          svg.appendChild(dot);
        }
      }
    });
    plot.appendChild(svg);
    const legend = el("div", { class: "legend" });
    lines.forEach((l, i) => {
      const item = el("span", {});
      item.appendChild(el("i", { class: "c" + (i % 8) }));
      const latest = l.pts.length ? l.pts[l.pts.length - 1][1] : null;
      item.appendChild(document.createTextNode(l.name + (latest === null ? "" : " (latest " + num(latest) + " " + l.unit + ")")));
      legend.appendChild(item);
    });
    plot.appendChild(legend);
  }

  // --- tables ----------------------------------------------------------------------------------------
  function rows(table, data) {
    const body = table.querySelector("tbody");
    clear(body);
    for (const r of data) {
      const tr = el("tr");
      for (const c of r) tr.appendChild(el("td", {}, c === null || c === undefined ? "" : c));
      body.appendChild(tr);
    }
  }

  // --- render ----------------------------------------------------------------------------------------
  function render(doc) {
    const now = Date.now();
    const state = $("#state");
    state.className = "state " + doc.state;
    state.dataset.state = doc.state;
    state.textContent = doc.stalled ? "STALLED" : doc.state === "behind" ? "BEHIND (working it off)" : "OK";
    $("#generated-at").textContent = utc(doc.generated_at);

    const problems = $("#problems");
    clear(problems);
    for (const p of doc.problems) {
      const li = el("li", { class: "bad" });
      li.appendChild(el("span", { class: "title" }, p.title + (p.since ? " (since " + utc(p.since) + " UTC)" : "") + ": "));
      li.appendChild(document.createTextNode(p.detail + ". What to do: " + p.what_to_do));
      problems.appendChild(li);
    }
    for (const b of doc.behind) problems.appendChild(el("li", { class: "warn" }, "Behind, not stalled: " + b));
    if (!doc.problems.length && !doc.behind.length) problems.appendChild(el("li", { class: "ok" }, "Nothing is red."));
    for (const [source, why] of Object.entries(doc.errors || {})) {
      problems.appendChild(el("li", { class: "bad" }, "Could not read " + source + ": " + why));
    }

    const loadAge = doc.last_load_age_seconds;
    setField("last_load_age", doc.last_load_at ? duration(loadAge) + " ago" : "never",
      doc.last_load_at && loadAge <= doc.stall_alert_seconds ? "ok" : "warn");
    setField("last_load_at", doc.last_load_at ? utc(doc.last_load_at) + " UTC, " + (doc.last_load.batches || 0) +
      " batch(es), " + num(doc.last_load.records_read || 0) + " records" : "no load yet");
    setField("freshness_p95_seconds", doc.freshness_p95_seconds === null ? "–" : "p95 " + duration(doc.freshness_p95_seconds));
    setField("freshness_p50_seconds", doc.freshness_p50_seconds === null ? "no versions loaded in the window" :
      "p50 " + duration(doc.freshness_p50_seconds) + ", " + num(doc.freshness.changes) + " versions, load at " + utc(doc.freshness.loaded_at));
    const lags = Object.values(doc.lag_seconds);
    const lagMax = lags.length ? Math.max(...lags) : null;
    setField("lag_max", lagMax === null ? "–" : duration(lagMax), lagMax !== null && lagMax > doc.stall_alert_seconds ? "bad" : null);
    setField("kinesis_as_of", lags.length + " open shard(s), checked " + ago(doc.as_of.kinesis, now));
    setField("backlog_batches", num(doc.backlog_batches) + " batch(es)", doc.backlog_batches ? "warn" : null);
    setField("backlog_oldest", doc.backlog_oldest_landed_at ? "oldest landed " + ago(doc.backlog_oldest_landed_at, now) : "none waiting");
    const rc = doc.reconciliation || {};
    if (rc.run_id) {
      const stalled = rc.verdict && rc.verdict !== "judged";
      // Everything in flight is nothing judged: not a green "0 mismatches".
      const unjudged = !stalled && rc.keys_checked > 0 && rc.in_flight >= rc.keys_checked && !rc.mismatches;
      setField("reconciliation", stalled ? rc.verdict : unjudged ? "not judged yet" : rc.mismatches + " mismatch(es)",
        stalled || unjudged ? "warn" : rc.passed ? "ok" : "bad");
      setField("reconciliation_at", "checked " + utc(rc.checked_at) + " UTC, " + rc.identities + " identities, " +
        num(rc.keys_checked - rc.in_flight) + " of " + num(rc.keys_checked) + " keys judged");
    } else {
      setField("reconciliation", "none yet");
      setField("reconciliation_at", "cognito_reconcile has not run");
    }
    setField("watermark", doc.watermark ? utc(doc.watermark) + " UTC" : "unknown (a shard was never landed, or Kinesis could not be read)");

    // The window, or less when the history is younger (a new deployment's first hour is readable);
    // the same span on every chart, so their times line up.
    const t1 = Date.parse(doc.generated_at);
    const first = Math.min(...Object.values(doc.charts).flat().flatMap((s) => s.points.map((p) => Date.parse(p[0]))));
    const span = Math.max(15 * 60 * 1000, (t1 - (Number.isFinite(first) ? first : t1)) * 1.05);
    const t0 = t1 - Math.min(doc.window_hours * 3600 * 1000, span);
    for (const name of ["freshness", "lag", "backlog", "throughput", "rejects", "load_duration"]) {
      lineChart($("#chart-" + name), doc.charts[name] || [], t0, t1);
    }

    rows($("#shards"), doc.shards.map((s) => [s.shard_id, num(s.lag_seconds), utc(s.oldest_waiting_at) === "–" ? "none" : utc(s.oldest_waiting_at),
      utc(s.landed_through), utc(s.loaded_through), utc(s.last_landed_at), s.error ? "failed: " + s.error : utc(s.checked_at)]));
    const ll = doc.last_load || {};
    rows($("#last-load"), Object.keys(ll).length ? Object.entries(ll).map(([k, v]) => [k, typeof v === "string" ? utc(v) : v]) : [["no load yet", ""]]);
    rows($("#reconciliation"), rc.run_id ? [
      ["run", rc.run_id], ["checked at (UTC)", utc(rc.checked_at)], ["verdict", rc.verdict],
      ["watermark (UTC)", utc(rc.watermark_at)], ["identities", rc.identities], ["keys checked", rc.keys_checked],
      ["in flight (not judged)", rc.in_flight], ["mismatches", rc.mismatches],
      ...Object.entries(rc.by_kind || {}).map(([k, v]) => ["  " + k, v]), ["passed", rc.passed ? "yes" : "no"],
    ] : [["no reconciliation yet", ""]]);
    const sn = doc.snapshot || {};
    rows($("#snapshot"), !sn.snapshot_id ? [["no snapshot yet", ""]] : sn.run_id === undefined ? [
      ["snapshot", sn.snapshot_id], ["state", "paging identities"],
    ] : [
      ["snapshot", sn.snapshot_id], ["run", sn.run_id], ["started (UTC)", utc(sn.created_at)],
      ["identities", num(sn.identities_done) + " of " + num(sn.identities) + (sn.finished ? " (finished)" : "")],
      ["rate", sn.identities_per_second + " identities/s"],
      ["time left", sn.finished ? "–" : duration(sn.eta_seconds)],
      ["chunks finished", num(sn.chunks_finished) + " of " + num(sn.chunks)],
      ["datasets / records read", num(sn.datasets_read) + " / " + num(sn.records_read)],
      ["dataset deletes inferred", sn.dataset_deletes], ["batches landed", sn.batches],
      ["throttled answers", sn.throttled],
    ]);
    rows($("#bulk-publish"), doc.bulk_publish.map((r) => [r.identity_pool_id, utc(r.requested_at), r.decision, r.status,
      utc(r.started_at), utc(r.completed_at), r.failure_message]));
    rows($("#rejects"), Object.entries(doc.rejects_by_reason).map(([k, v]) => [k, v]));
    renderAges();
    const errors = $("#errors");
    clear(errors);
    for (const [source, why] of Object.entries(doc.errors || {})) errors.appendChild(el("li", {}, source + ": " + why));
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  }

  function renderAges() {
    if (!last) return;
    const now = Date.now();
    $("#generated-age").textContent = ago(last.generated_at, now);
    rows($("#sources"), Object.entries(last.as_of).map(([k, v]) => [k, v ? utc(v) + " UTC" : "could not be read", v ? ago(v, now) : ""]));
  }

  async function load() {
    const error = $("#load-error");
    try {
      const response = await fetch("api/health?hours=" + hours, { credentials: "same-origin", cache: "no-store" });
      const doc = await response.json();
      if (!response.ok) throw new Error((doc && (doc.error || doc.detail)) || "HTTP " + response.status);
      last = doc;
      fetchedAt = Date.now();
      error.hidden = true;
      render(doc);
    } catch (err) {
      error.hidden = false;
      error.textContent = "Could not refresh: " + err.message + (fetchedAt ? " (showing the numbers of " + ago(new Date(fetchedAt).toISOString(), Date.now()) + ")" : "");
    }
  }

  function start() {
    for (const b of document.querySelectorAll("#windows button")) {
      if (Number(b.dataset.hours) === hours) b.classList.add("active");
      b.addEventListener("click", () => {
        hours = Number(b.dataset.hours);
        for (const o of document.querySelectorAll("#windows button")) o.classList.toggle("active", o === b);
        load();
      });
    }
    load();
    setInterval(load, REFRESH_MS);
    setInterval(renderAges, 1000);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
