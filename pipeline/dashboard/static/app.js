// The pipeline dashboard: polls the server's JSON API and draws crawls, workers and schedules.
// Everything from the server is put on the page as text (never as HTML), so a crawled site's
// URLs and error messages cannot inject markup.

const OVERVIEW_EVERY_MS = 2000;
const DETAIL_EVERY_MS = 3000;
const STALE_AFTER_S = 10;
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false).map(asNode));
  return el;
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  el.append(...children.flat().filter(Boolean).map(asNode));
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function asNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

// ---- formatting ---------------------------------------------------------------------------

const number = new Intl.NumberFormat("en-US");
const fmt = (n) => (n === null || n === undefined ? "–" : number.format(n));

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

const epoch = (value) => (typeof value === "number" ? value : value ? Date.parse(value) / 1000 : null);
function ago(value) {
  const t = epoch(value);
  return t === null ? "never" : `${duration(Date.now() / 1000 - t)} ago`;
}
function until(value) {
  const t = epoch(value);
  return t === null ? "–" : `in ${duration(t - Date.now() / 1000)}`;
}
const rate = (r) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));

// ---- talking to the server ------------------------------------------------------------------

function readToken() {
  const embedded = document.querySelector('meta[name="pipeline-token"]').content;
  if (embedded) return embedded;
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("pipeline-token", fromHash);
    history.replaceState(null, "", location.pathname);
    return fromHash;
  }
  return sessionStorage.getItem("pipeline-token") || "";
}

const state = {
  token: readToken(),
  selected: sessionStorage.getItem("pipeline-selected"),
  overview: null,
  lastUpdate: 0,
  busy: { overview: false, detail: false },
};

async function api(path, method = "GET") {
  const response = await fetch(path, { method, headers: { "X-Pipeline-Token": state.token }, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

let toastTimer = null;
function toast(message, isError = false) {
  const el = $("toast");
  el.textContent = message;
  el.className = isError ? "toast error" : "toast";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), isError ? 7000 : 3000);
}

async function act(crawlId, action) {
  if (action === "cancel" && !confirm(`Cancel crawl ${crawlId}? Queued URLs are dropped; this cannot be undone.`)) return;
  try {
    const result = await api(`/api/crawls/${encodeURIComponent(crawlId)}/${action}`, "POST");
    toast(`Crawl ${crawlId}: ${result.state}`);
  } catch (error) {
    toast(error.message, true);
  }
  await Promise.all([refreshOverview(), refreshDetail(true)]);
}

async function actSchedule(name, action) {
  try {
    await api(`/api/schedules/${encodeURIComponent(name)}/${action}`, "POST");
    toast(`Schedule ${name}: ${action === "pause" ? "paused" : "resumed"}`);
  } catch (error) {
    toast(error.message, true);
  }
  await refreshOverview();
}

// ---- crawls ---------------------------------------------------------------------------------

const ACTIONS = {
  running: ["pause", "cancel"],
  paused: ["resume", "cancel"],
  cancelling: [],
  cancelled: [],
  done: ["retry"],
  failed: ["retry"],
};
const LABELS = { pause: "Pause", resume: "Resume", cancel: "Cancel", retry: "Retry" };

function actionsFor(crawl) {
  const failures = (crawl.counters.failed || 0) + (crawl.counters.lists_failed || 0);
  return (ACTIONS[crawl.state] || []).filter((a) => a !== "retry" || failures > 0);
}

function actionButtons(crawl) {
  return actionsFor(crawl).map((action) =>
    h("button", {
      class: `btn ${action === "cancel" ? "danger" : action === "resume" || action === "retry" ? "primary" : ""}`,
      type: "button",
      "data-action": action,
      "aria-label": `${LABELS[action]} crawl ${crawl.crawl_id}`,
      text: LABELS[action],
      onclick: (event) => {
        event.stopPropagation();
        event.currentTarget.disabled = true;
        act(crawl.crawl_id, action);
      },
    }),
  );
}

function badge(crawlState) {
  return h("span", { class: `badge ${crawlState}`, "data-state": crawlState, text: crawlState });
}

function progressBar(crawl) {
  const c = crawl.counters;
  const total = Math.max(crawl.discovered, 1);
  const part = (n) => `${(100 * (n || 0)) / total}%`;
  const bar = h("div", { class: `bar ${crawl.state}`, role: "progressbar", "aria-valuenow": Math.round(crawl.progress * 100) });
  const ok = h("span", { class: "ok" });
  const bad = h("span", { class: "bad" });
  const cut = h("span", { class: "cut" });
  ok.style.width = part((c.stored || 0) + (c.unchanged || 0));
  bad.style.width = part(c.failed);
  cut.style.width = part(c.cancelled);
  bar.append(ok, bad, cut);
  const pct = crawl.discovered ? `${Math.floor(crawl.progress * 100)}%` : crawl.state === "failed" ? "nothing found" : "";
  return [
    bar,
    h("div", { class: "progress-text" },
      h("span", { class: "settled", text: `${fmt(crawl.settled)} / ${fmt(crawl.discovered)}` }),
      h("span", { text: pct })),
  ];
}

function sparkline(points) {
  const width = 72;
  const height = 22;
  const el = svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
  if (!points || points.length < 2) return el;
  const values = smooth(points.map((p) => p[1]), 3);
  const max = Math.max(...values, 1e-9);
  const step = width / (values.length - 1);
  const coords = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  el.append(svg("path", { d: `M0,${height} L${coords.join(" L")} L${width},${height} Z` }));
  el.append(svg("polyline", { points: coords.join(" ") }));
  return el;
}

function smooth(values, span) {
  return values.map((_, i) => {
    const part = values.slice(Math.max(0, i - span + 1), i + 1);
    return part.reduce((a, b) => a + b, 0) / part.length;
  });
}

const rows = new Map();

function renderCrawls(crawls) {
  const body = $("crawl-rows");
  $("crawls-empty").hidden = crawls.length > 0;
  const seen = new Set();
  crawls.forEach((crawl, index) => {
    seen.add(crawl.crawl_id);
    let tr = rows.get(crawl.crawl_id);
    if (!tr) {
      tr = h("tr", { "data-crawl": crawl.crawl_id, onclick: () => select(crawl.crawl_id) });
      for (let i = 0; i < 9; i++) tr.append(h("td"));
      rows.set(crawl.crawl_id, tr);
    }
    fillRow(tr, crawl);
    if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
  });
  for (const [id, tr] of rows) {
    if (!seen.has(id)) {
      tr.remove();
      rows.delete(id);
    }
  }
  const running = crawls.filter((c) => c.state === "running").length;
  $("crawls-note").textContent = `${crawls.length} shown · ${running} running`;
}

function fillRow(tr, crawl) {
  const cells = tr.children;
  const c = crawl.counters;
  tr.classList.toggle("selected", crawl.crawl_id === state.selected);
  cells[0].replaceChildren(badge(crawl.state));
  cells[1].className = "crawl-cell";
  cells[1].replaceChildren(...[
    h("span", { class: "url", title: crawl.start_url, text: crawl.start_url }),
    h("span", { class: "sub" },
      h("span", { class: "mono", text: crawl.crawl_id }),
      crawl.schedule ? h("span", { class: "tag", text: `schedule ${crawl.schedule}` }) : null,
      h("span", { text: crawl.finished_at ? `finished ${ago(crawl.finished_at)}` : `started ${ago(crawl.created_at)}` })),
    crawl.error ? h("span", { class: "row-error", title: crawl.error, text: crawl.error }) : null,
  ].filter(Boolean));
  cells[2].replaceChildren(...progressBar(crawl));
  cells[3].className = "num";
  cells[3].replaceChildren(
    h("div", { class: "rate" }, sparkline(crawl.history), h("span", { class: "rate-value", text: crawl.state === "running" ? rate(crawl.rate) : "–" })),
  );
  cells[4].className = "num";
  cells[4].textContent = crawl.state === "running" ? duration(crawl.eta_s) : "–";
  for (const [i, key] of [[5, "stored"], [6, "failed"], [7, "cancelled"]]) {
    cells[i].className = `num count-${key}`;
    cells[i].textContent = fmt((c[key] || 0) + (key === "stored" ? c.unchanged || 0 : 0));
  }
  const signature = actionsFor(crawl).join(",");
  if (tr.dataset.actions !== signature || !cells[8].firstChild) {
    tr.dataset.actions = signature;
    cells[8].replaceChildren(h("div", { class: "actions" }, actionButtons(crawl)));
  }
}

function select(crawlId) {
  state.selected = crawlId;
  sessionStorage.setItem("pipeline-selected", crawlId);
  for (const [id, tr] of rows) tr.classList.toggle("selected", id === crawlId);
  refreshDetail(true);
}

// ---- one crawl in depth -----------------------------------------------------------------------

function rateChart(points) {
  const box = h("div", { class: "chart" });
  const values = smooth(points.map((p) => p[1]), 3);
  const current = values.length ? values[values.length - 1] : 0;
  const peak = values.length ? Math.max(...values) : 0;
  box.append(
    h("div", { class: "chart-head" },
      h("span", {}, h("b", { text: `${rate(current)} ` }), "pages/s now"),
      h("span", { text: points.length > 1 ? `peak ${rate(peak)} · last ${duration(points[points.length - 1][0] - points[0][0])}` : "collecting samples…" })),
  );
  const width = Math.max(320, Math.floor(($("detail").clientWidth || 800) - 62));
  const height = 150;
  const pad = { left: 34, right: 6, top: 8, bottom: 18 };
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "pages per second over time" });
  const defs = svg("defs", {},
    svg("linearGradient", { id: "rate-fill", x1: 0, y1: 0, x2: 0, y2: 1 },
      svg("stop", { offset: "0%", "stop-color": "#4aa3ff", "stop-opacity": 0.35 }),
      svg("stop", { offset: "100%", "stop-color": "#4aa3ff", "stop-opacity": 0.02 })));
  chart.append(defs);
  const top = niceMax(peak);
  const x0 = pad.left;
  const x1 = width - pad.right;
  const y0 = height - pad.bottom;
  const y1 = pad.top;
  for (const fraction of [0, 0.5, 1]) {
    const y = y0 - fraction * (y0 - y1);
    chart.append(svg("line", { class: "gridline", x1: x0, x2: x1, y1: y, y2: y }));
    chart.append(svg("text", { x: x0 - 6, y: y + 3, "text-anchor": "end" }, rate(top * fraction)));
  }
  if (points.length > 1) {
    const t0 = points[0][0];
    const span = Math.max(points[points.length - 1][0] - t0, 1);
    const xy = values.map((v, i) => [x0 + ((points[i][0] - t0) / span) * (x1 - x0), y0 - (v / top) * (y0 - y1)]);
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" L");
    chart.append(svg("path", { class: "area", d: `M${x0},${y0} L${line} L${xy[xy.length - 1][0].toFixed(1)},${y0} Z` }));
    chart.append(svg("path", { class: "line", d: `M${line}` }));
    chart.append(svg("text", { x: x0, y: height - 4 }, `-${duration(span)}`));
    chart.append(svg("text", { x: x1, y: height - 4, "text-anchor": "end" }, "now"));
  }
  box.append(chart);
  return box;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

function tiles(crawl) {
  const c = crawl.counters;
  const tile = (label, value, cls = "") =>
    h("div", { class: `tile ${cls}`, "data-counter": label }, h("b", { text: typeof value === "number" ? fmt(value) : value }), h("span", { text: label }));
  return h("div", { class: "tiles" },
    tile("discovered", c.discovered || 0),
    tile("stored", c.stored || 0, "good"),
    tile("unchanged", c.unchanged || 0),
    tile("failed", c.failed || 0, c.failed ? "bad" : ""),
    tile("cancelled", c.cancelled || 0, c.cancelled ? "cut" : ""),
    tile("pending", c.pending || 0),
    tile("retries", c.retries || 0),
    tile("queued", c.queued || 0),
    tile("in backlog", c.waiting || 0),
    tile("list pages", `${fmt(c.lists_done || 0)} / ${fmt(c.lists || 0)}`));
}

function histogram(entries, classOf, empty) {
  const box = h("div", { class: "bars" });
  if (!entries.length) return h("p", { class: "muted", text: empty });
  const max = Math.max(...entries.map((e) => e[1]), 1);
  for (const [label, value] of entries) {
    const fill = h("div", { class: `fill ${classOf(label)}` });
    fill.style.width = `${(100 * value) / max}%`;
    box.append(h("div", { class: "row" }, h("span", { class: "label", title: label, text: label }), h("div", { class: "track" }, fill), h("span", { class: "num", text: fmt(value) })));
  }
  return box;
}

function renderDetail(detail) {
  const root = $("detail");
  const crawl = detail.crawl;
  const meta = h("div", { class: "detail-meta" },
    h("span", { class: "mono", text: crawl.crawl_id }),
    h("span", { text: `started ${ago(crawl.created_at)}` }),
    h("span", { text: crawl.finished_at ? `took ${duration(crawl.duration_s)}` : `running for ${duration(crawl.duration_s)}` }),
    crawl.schedule ? h("span", { text: `schedule ${crawl.schedule}` }) : null,
    ...Object.entries(detail.options).map(([k, v]) => h("span", { class: "faint", text: `${k} ${v}` })));
  const parts = [
    h("div", { class: "detail-head" }, badge(crawl.state), h("div", { class: "title", text: crawl.start_url }), h("div", { class: "actions" }, actionButtons(crawl))),
    meta,
  ];
  if (crawl.error) parts.push(h("div", { class: "banner error", role: "alert" }, h("b", { text: "Why it failed: " }), crawl.error));
  if (crawl.state === "paused" || crawl.state === "cancelling") {
    const running = detail.running_jobs;
    const what = crawl.state === "paused" ? "Paused: no new job of this crawl starts." : "Cancelling: queued URLs dropped.";
    parts.push(h("div", { class: "banner info", text: `${what} ${running} job(s) still running${running ? ", finishing now" : ""}.` }));
  }
  parts.push(rateChart(detail.rate_history), tiles(crawl));
  const statusEntries = Object.entries(detail.status_histogram);
  const statusClass = (label) => (/^\d/.test(label) ? `s${label[0]}` : "err");
  const reasonEntries = detail.failure_reasons.map((r) => [r.reason, r.urls]);
  const hosts = h("table", { class: "compact hosts" },
    h("thead", {}, h("tr", {}, h("th", { text: "Host" }), h("th", { class: "num", text: "Mean ms" }), h("th", { class: "num", text: "Pages" }), h("th", { class: "num", text: "Limit" }))),
    h("tbody", {}, detail.slowest_hosts.map((row) => h("tr", {},
      h("td", { class: "mono", text: row.host }),
      h("td", { class: "num", text: fmt(row.mean_fetch_ms) }),
      h("td", { class: "num", text: fmt(row.pages) }),
      h("td", { class: "num", title: "requests in flight per worker", text: row.limit ?? "–" })))));
  parts.push(h("div", { class: "columns" },
    h("div", {}, h("h3", { text: "HTTP status" }), histogram(statusEntries, statusClass, "No responses yet.")),
    h("div", { class: "reasons" }, h("h3", { text: "Failure reasons" }), histogram(reasonEntries, () => "err", "No failures.")),
    h("div", {}, h("h3", { text: "Slowest hosts" }), detail.slowest_hosts.length ? hosts : h("p", { class: "muted", text: "No pages yet." }))));
  const skipped = Object.entries(detail.skipped);
  const limits = Object.entries(detail.host_limits);
  parts.push(h("div", { class: "kv" },
    h("span", { class: "faint", text: "Skipped:" }),
    skipped.length ? skipped.map(([k, v]) => h("span", {}, `${k.replace("skipped_", "").replace("capped", "over max_pages")} `, h("b", { text: fmt(v) }))) : h("span", { text: "nothing" }),
    limits.length ? h("span", { class: "faint", text: "· Per-host limits:" }) : null,
    limits.map(([host, limit]) => h("span", {}, `${host} `, h("b", { text: limit })))));
  if (detail.failures.length) {
    parts.push(h("h3", { class: "spaced", text: "Latest failures" }));
    parts.push(h("table", { class: "compact failures" },
      h("thead", {}, h("tr", {}, h("th", { text: "URL" }), h("th", { text: "Reason" }), h("th", { class: "num", text: "Status" }), h("th", { class: "num", text: "Tries" }), h("th", { class: "num", text: "When" }))),
      h("tbody", {}, detail.failures.map((f) => h("tr", {},
        h("td", { class: "url mono", title: f.url, text: f.url }),
        h("td", { class: "err", text: f.error || "" }),
        h("td", { class: "num", text: f.status ?? "–" }),
        h("td", { class: "num", text: f.attempts ?? "–" }),
        h("td", { class: "num", text: ago(f.failed_at) }))))));
  }
  root.replaceChildren(...parts);
  root.dataset.crawl = crawl.crawl_id;
}

// ---- workers and schedules ------------------------------------------------------------------

function renderWorkers(workers) {
  $("workers-empty").hidden = workers.length > 0;
  const alive = workers.filter((w) => w.alive).length;
  $("workers-note").textContent = workers.length ? `${alive} alive` : "";
  $("worker-rows").replaceChildren(...workers.map((w) => {
    const dot = !w.alive ? "gone" : w.polling ? "ok" : "idle";
    const lag = w.loop_lag_ms;
    return h("tr", { class: w.alive ? "" : "gone" },
      h("td", {}, h("span", { class: `wdot ${dot}`, title: !w.alive ? "gone quiet" : w.polling ? "polling" : "not polling" })),
      h("td", { class: "worker-id mono", title: w.id }, w.id, h("small", { text: [w.role, w.metrics && `metrics ${w.metrics}`].filter(Boolean).join(" · ") })),
      h("td", { class: "num", text: w.alive ? `${fmt(w.jobs_running)} / ${fmt(w.max_jobs)}` : "–" }),
      h("td", { class: `num ${lag > 250 ? "lag-bad" : lag > 50 ? "lag-warn" : ""}`, text: w.alive && lag !== undefined ? `${lag} ms` : "–" }),
      h("td", { class: "num", text: ago(w.last_seen) }));
  }));
}

function renderSchedules(schedules) {
  $("schedules-empty").hidden = schedules.length > 0;
  $("schedules").replaceChildren(...schedules.map((s) => {
    const action = s.paused ? "resume" : "pause";
    return h("div", { class: "schedule", "data-schedule": s.name },
      h("div", { class: "name" }, s.name, s.paused ? badge("paused") : null, h("span", { class: "tag mono", text: s.cron })),
      h("button", { class: `btn ${s.paused ? "primary" : ""}`, type: "button", text: s.paused ? "Resume" : "Pause", onclick: () => actSchedule(s.name, action) }),
      h("div", { class: "meta" },
        h("span", { text: `last ${ago(s.last_run_at)}${s.last_crawl_state ? ` (${s.last_crawl_state})` : ""}` }),
        h("span", { text: s.paused ? "next tick skipped" : `next ${until(s.next_run)}` }),
        h("span", { text: `${fmt(s.runs)} run${s.runs === 1 ? "" : "s"} · ${fmt(s.skipped)} skipped` }),
        s.last_skip_reason && s.skipped ? h("span", { class: "faint", text: `last skip: ${s.last_skip_reason}` }) : null));
  }));
}

function renderChips(data) {
  const count = (st) => data.crawls.filter((c) => c.state === st).length;
  const alive = data.workers.filter((w) => w.alive).length;
  const chip = (value, label, cls = "") => h("div", { class: `chip ${cls}` }, h("b", { text: value }), h("span", { text: label }));
  const chips = [
    chip(fmt(count("running")), "running"),
    count("paused") ? chip(fmt(count("paused")), "paused", "warn") : null,
    count("cancelling") ? chip(fmt(count("cancelling")), "cancelling", "warn") : null,
    chip(`${alive}/${data.workers.length}`, "workers alive", alive === 0 ? "bad" : ""),
    chip(fmt(data.queue.depth), `jobs queued · ${fmt(data.queue.held)} held`),
    chip(rate(data.rate), "pages/s"),
  ];
  $("chips").replaceChildren(...chips.filter(Boolean));
}

// ---- the loop -------------------------------------------------------------------------------

async function refreshOverview() {
  if (state.busy.overview) return;
  state.busy.overview = true;
  try {
    const data = await api("/api/overview");
    state.overview = data;
    state.lastUpdate = Date.now();
    $("queue-name").textContent = data.queue.name;
    renderChips(data);
    renderCrawls(data.crawls);
    renderWorkers(data.workers);
    renderSchedules(data.schedules);
    if (!state.selected || !data.crawls.some((c) => c.crawl_id === state.selected)) {
      const first = data.crawls.find((c) => c.state === "running") || data.crawls[0];
      if (first) select(first.crawl_id);
    }
  } catch (error) {
    if (error.status === 401) askForToken();
    else setLive(false, error.message);
  } finally {
    state.busy.overview = false;
  }
}

async function refreshDetail(force = false) {
  if (!state.selected || (state.busy.detail && !force)) return;
  state.busy.detail = true;
  try {
    renderDetail(await api(`/api/crawls/${encodeURIComponent(state.selected)}`));
  } catch (error) {
    if (error.status === 404) state.selected = null;
  } finally {
    state.busy.detail = false;
  }
}

function setLive(ok, message) {
  const el = $("live");
  el.className = `live ${ok ? "ok" : "stale"}`;
  $("live-text").textContent = message;
}

function tickLive() {
  if (!state.lastUpdate) return;
  const age = (Date.now() - state.lastUpdate) / 1000;
  if (age > STALE_AFTER_S) setLive(false, `no update for ${duration(age)}`);
  else setLive(true, `live · updated ${Math.round(age)}s ago`);
}

function askForToken() {
  $("token-card").hidden = false;
  $("token-input").focus();
}

function start() {
  $("queue-name").textContent = document.querySelector('meta[name="pipeline-queue"]').content;
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("pipeline-token", state.token);
    $("token-card").hidden = true;
    refreshOverview();
  });
  if (!state.token) askForToken();
  refreshOverview();
  setInterval(refreshOverview, OVERVIEW_EVERY_MS);
  setInterval(() => refreshDetail(), DETAIL_EVERY_MS);
  setInterval(tickLive, 1000);
}

start();
