// analytics-api's built-in page: Live (from /metrics), Reports (from /reports/*), SQL (POST /sql).
"use strict";

const $ = (selector) => document.querySelector(selector);
const tokenInput = $("#token");
tokenInput.value = localStorage.getItem("readToken") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("readToken", tokenInput.value));

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (tokenInput.value) headers["X-Read-Token"] = tokenInput.value;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch (e) { /* /metrics is text */ }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${text.slice(0, 200)}`;
    throw new Error(message);
  }
  return body;
}

// ---------- tabs ----------
const tabs = {};
function show(name) {
  document.querySelectorAll(".tab").forEach((el) => el.classList.toggle("active", el.id === `tab-${name}`));
  document.querySelectorAll("nav a").forEach((el) => el.classList.toggle("active", el.dataset.tab === name));
  if (tabs[name] && !tabs[name].started) { tabs[name].started = true; tabs[name].start(); }
}
window.addEventListener("hashchange", () => show(location.hash.slice(1) || "live"));

// ---------- charts ----------
const COLORS = ["#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2"];
// A uPlot chart; its legend shows each series' value under the cursor. `options.scales` names a
// scale per series: a second scale gets its own axis on the right (revenue vs paying users).
function chart(target, names, options = {}) {
  const el = $(target);
  el.innerHTML = "";
  const scaleOf = (i) => (options.scales || [])[i] || "y";
  const series = [{}].concat(names.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2,
    scale: scaleOf(i), value: (u, v) => (v == null ? "–" : v.toLocaleString()),
    fill: options.bars ? COLORS[i % COLORS.length] + "55" : undefined,
    paths: options.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined })));
  const scales = [...new Set(names.map((_, i) => scaleOf(i)))];
  const axes = [{}].concat(scales.map((scale, i) => ({ scale, size: 60, side: i === 0 ? 3 : 1,
    label: (options.axisLabels || [])[i], stroke: scales.length > 1 ? COLORS[names.findIndex((_, j) => scaleOf(j) === scale)] : undefined,
    grid: { show: i === 0 } })));
  const opts = { width: Math.max(320, el.clientWidth || 500), height: 220, series,
    scales: { x: { time: true } }, axes, legend: { show: true, live: true } };
  const data = [[]].concat(names.map(() => []));
  return new uPlot(opts, data, el);
}

// Draw the data, or say in words that there is none (rather than an empty frame).
function plot(target, names, data, options = {}) {
  const empty = data[0].length === 0 || data.slice(1).every((s) => s.every((v) => !v));
  if (empty) {
    $(target).innerHTML = '<p class="empty">No events in this range and filter.</p>';
    return null;
  }
  const drawn = chart(target, names, options);
  drawn.setData(data);
  return drawn;
}
const day = (iso) => Date.parse(`${iso}T00:00:00Z`) / 1000;

// ---------- Live ----------
function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const space = line.lastIndexOf(" ");
    const name = line.slice(0, space).split("{")[0];
    sums[name] = (sums[name] || 0) + Number(line.slice(space + 1));
  }
  return sums;
}
tabs.live = {
  start() {
    const events = chart("#live-events", ["accepted/s", "rejected/s"]);
    const insert = chart("#live-insert", ["INSERT ms"]);
    const queue = chart("#live-queue", ["queued rows", "log kB"]);
    const points = { t: [], accepted: [], rejected: [], insert: [], queue: [], log: [] };
    let last = null;
    const tick = async () => {
      try {
        const m = parseMetrics(await api("/metrics"));
        const now = Date.now() / 1000;
        if (last) {
          const dt = now - last.now;
          const inserts = (m.insert_duration_seconds_count || 0) - (last.m.insert_duration_seconds_count || 0);
          const seconds = (m.insert_duration_seconds_sum || 0) - (last.m.insert_duration_seconds_sum || 0);
          points.t.push(now);
          points.accepted.push(((m.events_accepted_total || 0) - (last.m.events_accepted_total || 0)) / dt);
          points.rejected.push(((m.events_rejected_total || 0) - (last.m.events_rejected_total || 0)) / dt);
          points.insert.push(inserts > 0 ? (seconds / inserts) * 1000 : 0);
          points.queue.push(m.batcher_queue_rows || 0);
          points.log.push((m.log_bytes || 0) / 1000);
          for (const key of Object.keys(points)) if (points[key].length > 150) points[key].shift();
          events.setData([points.t, points.accepted, points.rejected]);
          insert.setData([points.t, points.insert]);
          queue.setData([points.t, points.queue, points.log]);
        }
        last = { now, m };
        $("#live-status").textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (error) {
        $("#live-status").textContent = `error: ${error.message}`;
      }
    };
    tick();
    setInterval(tick, 2000);
  },
};

// ---------- Reports ----------
function isoDay(date) { return date.toISOString().slice(0, 10); }
$("#to").value = isoDay(new Date());
$("#from").value = isoDay(new Date(Date.now() - 29 * 86400e3));

tabs.reports = {
  start() {
    this.load();
    $("#report-form").addEventListener("submit", (e) => { e.preventDefault(); this.load(); });
    $("#breakdown-by").addEventListener("change", () => this.load());
  },
  async load() {
    const form = new FormData($("#report-form"));
    const params = new URLSearchParams();
    for (const [key, value] of form.entries()) if (value) params.set(key, value);
    const q = params.toString();
    $("#report-status").textContent = "loading…";
    try {
      const [daily, active, revenue, funnel, retention, breakdown] = await Promise.all([
        api(`/reports/daily?${q}`), api(`/reports/active-users?${q}`), api(`/reports/revenue?${q}`),
        api(`/reports/funnel?${q}&steps=view,start_task,finish_task,pay&window=3600`),
        api(`/reports/retention?${q}&period=week`),
        api(`/reports/breakdown?${q}&by=${$("#breakdown-by").value}&limit=10`),
      ]);
      const stats = daily.daily_stats;
      plot("#chart-active", ["DAU", "WAU", "MAU"],
        [active.map((r) => day(r.date)), active.map((r) => r.dau), active.map((r) => r.wau), active.map((r) => r.mau)]);
      plot("#chart-new", ["new users"], [stats.map((r) => day(r.date)), stats.map((r) => r.new_user_count)], { bars: true });
      plot("#chart-session", ["seconds"], [stats.map((r) => day(r.date)), stats.map((r) => r.average_session_duration)]);
      plot("#chart-revenue", ["revenue", "paying users"],
        [revenue.map((r) => day(r.date)), revenue.map((r) => r.revenue), revenue.map((r) => r.paying_users)],
        { scales: ["revenue", "users"], axisLabels: ["revenue", "paying users"] });
      drawFunnel(funnel);
      drawRetention(retention);
      drawBreakdown(breakdown);
      $("#report-status").textContent = `${daily.total_users.toLocaleString()} users in total`;
    } catch (error) {
      $("#report-status").textContent = `error: ${error.message}`;
    }
  },
};

function drawFunnel(funnel) {
  if (!funnel.steps[0].users) { $("#funnel").innerHTML = '<p class="empty">Nobody reached the first step in this range.</p>'; return; }
  const top = Math.max(1, ...funnel.steps.map((s) => s.users));
  $("#funnel").innerHTML = funnel.steps.map((s) =>
    `<div class="bar"><span class="label">${escapeHtml(s.step)}</span>` +
    `<span class="fill" style="width:${Math.round((s.users / top) * 70)}%"></span>` +
    `<span>${s.users.toLocaleString()} (${(s.conversion * 100).toFixed(1)}%)</span></div>`).join("");
}

function drawBreakdown(breakdown) {
  const rows = breakdown.values.concat(breakdown.other.events ? [{ value: "(all others)", ...breakdown.other }] : []);
  if (!rows.length) { $("#breakdown").innerHTML = '<p class="empty">No events in this range and filter.</p>'; return; }
  const top = Math.max(1, ...rows.map((r) => r.visitors));
  $("#breakdown").innerHTML = rows.map((r) =>
    `<div class="bar"><span class="label">${escapeHtml(r.value || "(none)")}</span>` +
    `<span class="fill" style="width:${Math.round((r.visitors / top) * 60)}%"></span>` +
    `<span>${r.visitors.toLocaleString()} visitors, ${r.events.toLocaleString()} events</span></div>`).join("");
}

function drawRetention(retention) {
  if (!retention.cohorts.length) { $("#retention").innerHTML = '<p class="empty">No new users in this range.</p>'; return; }
  const width = Math.max(0, ...retention.cohorts.map((c) => c.retained.length));
  const head = `<tr><th>cohort</th><th>users</th>${Array.from({ length: width }, (_, i) => `<th>+${i + 1}</th>`).join("")}</tr>`;
  const rows = retention.cohorts.map((c) => `<tr><td>${c.cohort}</td><td>${c.users}</td>` +
    c.retained.map((n) => `<td style="background:rgba(76,120,168,${c.users ? n / c.users : 0})">${n}</td>`).join("") + "</tr>");
  $("#retention").innerHTML = `<table>${head}${rows.join("")}</table>`;
}

// ---------- SQL ----------
const EXAMPLES = {
  active: `SELECT date,
       uniqMerge(s) OVER (ORDER BY date RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS dau,
       uniqMerge(s) OVER (ORDER BY date RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) AS wau,
       uniqMerge(s) OVER (ORDER BY date RANGE BETWEEN 29 PRECEDING AND CURRENT ROW) AS mau
FROM (SELECT toDate(dt) AS date, uniqState(user_id) AS s FROM events
      WHERE dt >= now() - toIntervalDay(6 * 30) GROUP BY date)
ORDER BY date`,
  ratio: `SELECT date, avg(finished_tasks / started_tasks) AS solve_ratio
FROM (SELECT toDate(dt) AS date, user_id,
             sum(event = 'finish_task') AS finished_tasks, sum(event = 'start_task') AS started_tasks
      FROM events
      WHERE dt >= now() - toIntervalDay(6 * 30) AND event IN ('view', 'start_task', 'finish_task')
      GROUP BY date, user_id HAVING started_tasks > 0)
GROUP BY date ORDER BY date`,
  funnel: `SELECT date, count() AS total_users,
       sum(chain_len_hour = 0) AS not_solve_tasks,
       sum(chain_len_hour = 1) AS try_solve_tasks,
       sum(chain_len_hour = 2) AS success_solve_tasks
FROM (SELECT toStartOfMonth(dt) AS date, user_id,
             windowFunnel(60 * 60)(toDateTime(dt), event = 'start_task', event = 'finish_task') AS chain_len_hour
      FROM events
      WHERE dt >= now() - toIntervalDay(6 * 30) AND event IN ('view', 'start_task', 'finish_task')
      GROUP BY date, user_id)
GROUP BY date ORDER BY date`,
  top: "SELECT event, count() AS events, uniqExact(user_id) AS users FROM events GROUP BY event ORDER BY events DESC",
};
tabs.sql = {
  start() {
    $("#run").addEventListener("click", runSql);
    $("#sql").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runSql(); });
    document.querySelectorAll(".example").forEach((b) => b.addEventListener("click", () => {
      $("#sql").value = EXAMPLES[b.dataset.example];
      runSql();
    }));
  },
};

async function runSql() {
  const error = $("#sql-error");
  error.hidden = true;
  $("#sql-status").textContent = "running…";
  try {
    const answer = await api("/sql", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql: $("#sql").value }) });
    const head = `<tr>${answer.columns.map((c, i) => `<th title="${escapeHtml(answer.types[i])}">${escapeHtml(c)}</th>`).join("")}</tr>`;
    const rows = answer.rows.map((r) => `<tr>${r.map((v) => `<td>${escapeHtml(v === null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v))}</td>`).join("")}</tr>`);
    $("#result").innerHTML = `<table id="result-table">${head}${rows.join("")}</table>`;
    $("#sql-status").textContent = `${answer.rows.length} row(s)${answer.truncated ? " (cut at the row limit)" : ""} in ${answer.elapsed_ms} ms`;
  } catch (e) {
    $("#result").innerHTML = "";
    error.textContent = e.message;
    error.hidden = false;
    $("#sql-status").textContent = "";
  }
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

show(location.hash.slice(1) || "live");
