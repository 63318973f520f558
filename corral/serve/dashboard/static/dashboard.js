/* corral dashboard: run list, run page, compare view. Hash routes (#/, #/run/NAME,
   #/compare?runs=a,b&metric=loss); JSON from /dashboard/api; charts with the vendored uPlot.
   Live runs poll only what changed: /metrics?after_step=N every few seconds. */
"use strict";

const API = "/dashboard/api";
const COLORS = ["#2c6fbb", "#d9622b", "#2e9e5b", "#9b4dca", "#c23b5a", "#7a8b1f",
                "#1b9aaa", "#8c564b", "#e0a100", "#555"];
const POLL_MS = 3000;
let timers = [];

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick" || k === "onchange") node[k] = v; else node.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
  }
  return node;
}

async function api(path) {
  const reply = await fetch(API + path, {credentials: "same-origin"});
  if (!reply.ok) throw new Error(`${path}: ${reply.status} ${(await reply.json()).detail || ""}`);
  return reply.json();
}

function fmt(v) {
  if (typeof v !== "number") return v === undefined || v === null ? "" : String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1000 || Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(4);
}

function ago(seconds) {
  const d = Date.now() / 1000 - seconds;
  if (d < 60) return `${Math.max(0, Math.round(d))} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

function headline(latest) {
  const keys = Object.keys(latest || {});
  const pick = ["eval/dev/pass@1", "eval/dev/mean", "reward", "loss"]
    .find(k => keys.includes(k)) || keys.find(k => /pass@1$/.test(k));
  return pick ? `${pick} ${fmt(latest[pick])}` : "";
}

function every(fn, ms) { timers.push(setInterval(fn, ms)); }

function setView(...kids) {
  const view = document.getElementById("view");
  view.replaceChildren(...kids);
  return view;
}

/* ---------- run list ---------- */
async function listPage(params) {
  const filters = {method: params.get("method") || "", task: params.get("task") || "",
                   status: params.get("status") || ""};
  const body = el("tbody");
  const head = el("div", {class: "filters"});
  const count = el("span", {class: "muted"});
  const compareBtn = el("button", {onclick: () => {
    const names = [...body.querySelectorAll("input:checked")].map(c => c.value);
    location.hash = `#/compare?runs=${names.map(encodeURIComponent).join(",")}`;
  }}, "compare selected");
  setView(el("h1", {}, "Runs"), head,
          el("table", {id: "runs"}, el("thead", {}, el("tr", {}, ["", "run", "method", "task",
            "status", "step", "latest", "updated"].map(h => el("th", {}, h)))), body));
  async function refresh() {
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    const data = await api(`/runs${q ? "?" + q : ""}`);
    if (!head.childElementCount) head.append(...filterControls(data, filters, refresh),
                                             compareBtn, count);
    const checked = new Set([...body.querySelectorAll("input:checked")].map(c => c.value));
    body.replaceChildren(...data.runs.map(r => runRow(r, checked.has(r.name))));
    count.textContent = `${data.runs.length} of ${data.total} runs in ${data.root}`;
  }
  await refresh();
  every(() => refresh().catch(showError), 5000);
}

function filterControls(data, filters, refresh) {
  return [["method", data.methods], ["task", data.tasks], ["status", data.statuses]]
    .map(([name, values]) => {
      const sel = el("select", {name, onchange: () => { filters[name] = sel.value; refresh(); }},
                     el("option", {value: ""}, `any ${name}`),
                     values.map(v => el("option", {value: v}, v)));
      sel.value = filters[name];
      return sel;
    });
}

function runRow(r, checked) {
  const box = el("input", {type: "checkbox", value: r.name});
  box.checked = checked;
  return el("tr", {"data-run": r.name}, el("td", {}, box),
            el("td", {}, el("a", {href: `#/run/${encodeURIComponent(r.name)}`}, r.name)),
            el("td", {}, r.method), el("td", {}, r.task),
            el("td", {}, el("span", {class: `status ${r.status}`}, r.status)),
            el("td", {class: "num"}, r.step), el("td", {}, headline(r.latest)),
            el("td", {class: "muted"}, ago(r.updated)));
}

/* ---------- charts ---------- */
function tick(v) {
  if (v === null || v === undefined) return "";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-2 ? v.toExponential(1) : String(+v.toPrecision(3));
}

function chart(target, title, keys) {
  const box = el("div", {class: "chart", "data-group": title}, el("h3", {}, title));
  target.append(box);
  const width = Math.max(300, box.clientWidth - 20);
  const opts = {width, height: 220, scales: {x: {time: false}}, legend: {live: false},
                axes: [{label: "step"}, {size: 60, values: (u, vals) => vals.map(tick)}],
                series: [{label: "step"}].concat(keys.map((k, i) => ({
                  label: k, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
                  points: {show: true, size: 4}})))};
  const plot = new uPlot(opts, [[]].concat(keys.map(() => [])), box);
  return {plot, keys};
}

function columns(rows, keys) {
  const kept = rows.filter(r => keys.some(k => typeof r[k] === "number"));
  return [kept.map(r => r.step)].concat(
    keys.map(k => kept.map(r => (typeof r[k] === "number" ? r[k] : null))));
}

/* ---------- run page ---------- */
async function runPage(name) {
  const run = await api(`/runs/${encodeURIComponent(name)}`);
  const s = run.summary;
  let rows = (await api(`/runs/${encodeURIComponent(name)}/metrics`)).rows;
  const charts = el("div", {class: "charts", id: "charts"});
  const samples = el("div", {id: "samples"});
  setView(el("h1", {}, name, " ", el("span", {class: `status ${s.status}`}, s.status || "")),
          el("p", {class: "muted"}, `${s.method || "?"} · task ${s.task || "-"} · model ` +
             `${s.model || "?"} · step ${s.step ?? 0} · ${rows.length} metrics rows`),
          el("h2", {}, "Learning curves"), charts,
          run.groups.length ? "" : el("p", {class: "muted"}, "no metrics yet"),
          el("h2", {}, "Checkpoints"), checkpointTable(run.checkpoints),
          el("h2", {}, "Samples"), samples,
          el("div", {class: "cols"},
             el("div", {}, el("h2", {}, "Config"), el("pre", {id: "config"}, run.config)),
             el("div", {}, el("h2", {}, "Lineage"), lineageBlock(run.lineage))));
  const drawn = run.groups.map(([title, keys]) => chart(charts, title, keys));
  const draw = () => {
    drawn.forEach(c => c.plot.setData(columns(rows, c.keys)));
    charts.dataset.rows = rows.length;
  };
  draw();
  await samplePage(name, samples, 0);
  if (s.status === "running") {
    document.getElementById("live").textContent = "live";
    every(async () => {
      const last = rows.length ? rows[rows.length - 1].step : -1;
      const fresh = (await api(`/runs/${encodeURIComponent(name)}/metrics?after_step=${last}`))
        .rows;
      document.getElementById("live").textContent = `live · polled ${new Date()
        .toLocaleTimeString()}`;
      if (!fresh.length) return;
      const charted = new Set(run.groups.flatMap(([, keys]) => keys));
      if (fresh.some(r => Object.keys(r).some(k => isCurve(k, r[k]) && !charted.has(k)))) {
        route();  // a new kind of curve (the first dev eval): lay the page out again
        return;
      }
      rows = rows.concat(fresh);
      draw();
    }, POLL_MS);
  }
}

function isCurve(key, value) {
  return typeof value === "number" && key !== "step" && key !== "time" &&
    !/(_stderr|n_items|n_samples)$/.test(key);
}

function checkpointTable(ckpts) {
  if (!ckpts.length) return el("p", {class: "muted"}, "no checkpoints");
  const keys = [...new Set(ckpts.flatMap(c => Object.keys(c.scores)))];
  return el("table", {id: "checkpoints"},
            el("thead", {}, el("tr", {}, el("th", {}, "checkpoint"), el("th", {}, "step"),
                               keys.map(k => el("th", {}, k)))),
            el("tbody", {}, ckpts.map(c => el("tr", {}, el("td", {}, c.name),
              el("td", {class: "num"}, c.step ?? ""),
              keys.map(k => el("td", {class: "num"}, fmt(c.scores[k])))))));
}

function lineageBlock(lineage) {
  if (lineage.error) return el("p", {class: "muted"}, lineage.error);
  return el("div", {}, el("pre", {id: "lineage"}, lineage.lines.join("\n")),
            lineage.flags.map(f => el("p", {class: "bad"}, "! " + f)));
}

async function samplePage(name, box, offset) {
  const limit = 10;
  const data = await api(`/runs/${encodeURIComponent(name)}/samples?offset=${offset}&limit=${limit}`);
  if (!data.total) { box.replaceChildren(el("p", {class: "muted"}, "no samples")); return; }
  const prev = el("button", {onclick: () => samplePage(name, box, Math.max(0, offset - limit))},
                  "previous");
  const next = el("button", {onclick: () => samplePage(name, box, offset + limit)}, "next");
  prev.disabled = offset === 0;
  next.disabled = offset + limit >= data.total;
  box.replaceChildren(
    el("div", {class: "pager"}, prev, next, el("span", {class: "muted"},
       `${offset + 1}–${offset + data.rows.length} of ${data.total}`)),
    el("table", {id: "sample-table"}, el("thead", {}, el("tr", {}, ["#", "item", "output",
       "grade", "breakdown"].map(h => el("th", {}, h)))),
       el("tbody", {}, data.rows.map((r, i) => sampleRow(r, offset + i)))));
}

function sampleRow(r, i) {
  const grade = r.grade ?? r.score ?? r.reward;
  const passed = r.passed === true ? el("span", {class: "pass"}, " pass")
    : r.passed === false ? el("span", {class: "fail"}, " fail") : "";
  const item = r.item ?? (r.prompt !== undefined ? `prompt ${r.prompt}` : "");
  const known = new Set(["output", "grade", "score", "passed", "details", "item", "prompt",
                         "model", "task"]);
  const rest = Object.entries({...(r.details || {}), ...r}).filter(([k]) => !known.has(k));
  const breakdown = rest.map(([k, v]) => (k === "sub_rewards" && v && typeof v === "object"
    ? Object.entries(v).map(([g, x]) => `${g}: ${fmt(x)}`).join("\n")
    : `${k}: ${typeof v === "object" ? JSON.stringify(v) : fmt(v)}`)).join("\n");
  return el("tr", {class: "sample"}, el("td", {class: "num"}, i + 1),
            el("td", {}, String(item)), el("td", {}, el("pre", {}, r.output ?? "")),
            el("td", {class: "num"}, fmt(grade), passed),
            el("td", {}, el("pre", {class: "breakdown"}, breakdown)));
}

/* ---------- compare ---------- */
async function comparePage(params) {
  const names = (params.get("runs") || "").split(",").filter(Boolean);
  const list = (await api("/runs")).runs.map(r => r.name);
  const picker = el("select", {multiple: "", size: Math.min(8, list.length || 1), id: "pick"},
                    list.map(n => el("option", {value: n}, n)));
  [...picker.options].forEach(o => { o.selected = names.includes(o.value); });
  const data = names.length ? await api(`/compare?runs=${names.map(encodeURIComponent)
    .join(",")}&metric=${encodeURIComponent(params.get("metric") || "")}`) : null;
  const metric = el("select", {id: "metric"}, (data ? data.keys : []).map(k =>
    el("option", {value: k}, k)));
  if (data) metric.value = data.metric;
  const go = () => {
    const chosen = [...picker.selectedOptions].map(o => encodeURIComponent(o.value));
    location.hash = `#/compare?runs=${chosen.join(",")}&metric=${encodeURIComponent(metric.value)}`;
  };
  picker.onchange = go;
  metric.onchange = go;
  const area = el("div", {class: "wide", id: "compare-chart"});
  setView(el("h1", {}, "Compare runs"),
          el("div", {class: "filters"}, picker, el("label", {}, "metric ", metric)), area);
  if (!data) { area.append(el("p", {class: "muted"}, "pick runs to compare")); return; }
  const steps = [...new Set(Object.values(data.series).flatMap(s => s.step))]
    .sort((a, b) => a - b);
  const c = chart(area, data.metric, names);
  c.plot.setData([steps].concat(names.map(n => {
    const s = data.series[n], at = new Map(s.step.map((x, i) => [x, s[data.metric][i]]));
    return steps.map(x => (at.has(x) ? at.get(x) : null));
  })));
}

/* ---------- routing ---------- */
function showError(err) {
  setView(el("p", {class: "bad"}, String(err.message || err)));
}

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  document.getElementById("live").textContent = "";
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  try {
    if (path.startsWith("/run/")) await runPage(decodeURIComponent(path.slice(5)));
    else if (path === "/compare") await comparePage(params);
    else await listPage(params);
  } catch (err) {
    showError(err);
  }
}

window.addEventListener("hashchange", route);
route();
