// solarbridge dashboard: plain JavaScript, no build step, no libraries, nothing from the internet.
// Live state comes from /api/events (server-sent events); history from /api/history; health from /api/health.
"use strict";

const FLOW = ["pv_power_w", "grid_power_w", "battery_power_w", "load_power_w"];
const NICE_STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const $ = (id) => document.getElementById(id);
const state = {
  devices: new Map(),   // device_id -> {info fields..., metrics, lastSeen (ms), interval (s), online}
  site: localStorage.getItem("sb.site") || "",
  siteChosen: !!localStorage.getItem("sb.site"), // the user picked a site: no automatic default any more
  energySite: localStorage.getItem("sb.energySite") || "",
  energyBy: localStorage.getItem("sb.energyBy") || "day",
  energy: null,
  historyWeight: new Map(), // device_id -> buckets of history over the last week (default view)
  range: Number(localStorage.getItem("sb.range")) || 86400,
  histDevice: localStorage.getItem("sb.histDevice") || "",
  histMetric: localStorage.getItem("sb.histMetric") || "",
  series: [],
  plot: null,
  health: new Map(),
  healthData: null,     // the last answer of /api/health
  healthOk: null,       // false once the daemon stopped answering
  healthAt: 0,
  healthLostAt: 0,
  dirty: false,
  openDetails: new Set(), // "<device>|phases" / "<device>|cells" sections the user opened
};

// ------------------------------------------------------------------ formatting

function fmtW(w) {
  if (w === null || w === undefined || Number.isNaN(w)) return "–";
  const a = Math.abs(w);
  if (a >= 10000) return (w / 1000).toFixed(1) + " kW";
  if (a >= 1000) return (w / 1000).toFixed(2) + " kW";
  return Math.round(w) + " W";
}
function fmtValue(v, unit) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string") return v;
  if (unit === "W") return fmtW(v);
  if (unit === "Wh") return Math.abs(v) >= 1000 ? (v / 1000).toFixed(2) + " kWh" : Math.round(v) + " Wh";
  const a = Math.abs(v);
  const s = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? s + " " + unit : s;
}
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 2) return "just now";
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function unitOf(metric) {
  if (metric.endsWith("_soc_pct") || metric.endsWith("_pct")) return "%";
  const m = metric.replace(/_l[123]$/, "");
  for (const [suf, u] of [["_kwh", "kWh"], ["_wh", "Wh"], ["_va", "VA"], ["_var", "var"], ["_w", "W"], ["_v", "V"],
                          ["_a", "A"], ["_hz", "Hz"], ["_c", "°C"], ["_s", "s"]]) {
    if (m.endsWith(suf)) return u;
  }
  return "";
}
// readable names for metrics: "module_power_w" -> "Module power", "pv1_voltage_v" -> "PV1 voltage"
const WORDS = { pv: "PV", soc: "SOC", ac: "AC", dc: "DC", bms: "BMS", eps: "EPS", ct: "CT", ups: "UPS", id: "ID" };
function metricLabel(metric) {
  const base = metric.replace(/_(kwh|wh|va|var|w|v|a|hz|c|s|pct|ah)(?=(_l[123])?$)/, "");
  const words = base.split("_").filter(Boolean).map((w) => {
    const m = /^([a-z]+)(\d*)$/.exec(w);
    if (m && WORDS[m[1]]) return WORDS[m[1]] + m[2];
    if (/^l[123]$/.test(w)) return w.toUpperCase();
    return w;
  });
  const text = words.join(" ");
  return text ? text[0].toUpperCase() + text.slice(1) : metric;
}
// a device's title: its name, plus what tells it apart when another device has the same name
function titleOf(d) { return d.title || d.name || d.device_id; }
function assignTitles() {
  const groups = new Map();
  for (const d of state.devices.values()) {
    const n = d.name || d.device_id;
    if (!groups.has(n)) groups.set(n, []);
    groups.get(n).push(d);
  }
  for (const [name, devs] of groups) {
    if (devs.length === 1) { devs[0].title = name; continue; }
    const ids = devs.map((d) => d.device_id);
    let p = 0;
    while (ids.every((id) => id.length > p && id[p] === ids[0][p])) p++;
    for (const d of devs) {
      const rest = d.device_id.slice(p).replace(/^[-_.:\s]+/, "").replace(/[-_]+/g, " ")
        .replace(/([a-z])([A-Z])/g, "$1 $2").replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2").trim();
      d.title = `${name} · ${rest || d.device_id}`;
    }
  }
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// ------------------------------------------------------------------ device state

function upsertDevice(d, fromReading) {
  let dev = state.devices.get(d.device_id);
  const now = Date.now();
  if (!dev) {
    dev = { device_id: d.device_id, device_type: d.device_type, name: d.device_id, metrics: {}, lastSeen: 0, lastData: 0,
            interval: 0, online: true, comms: "", model: "", serial: "", manufacturer: "" };
    state.devices.set(d.device_id, dev);
  }
  for (const k of ["device_type", "name", "model", "serial", "manufacturer", "source", "comms"]) {
    if (d[k] !== undefined && d[k] !== "") dev[k] = d[k];
  }
  if (d.metrics) Object.assign(dev.metrics, d.metrics);
  if (Array.isArray(d.controls)) dev.controls = d.controls;
  if (d.online !== undefined) dev.online = d.online;
  if (d.site) dev.site = d.site;
  if (fromReading) {
    if (dev.lastSeen && d.metrics && Object.keys(d.metrics).length) {
      const gap = (now - dev.lastSeen) / 1000;
      // smoothed reading interval, for "stale" detection
      if (gap > 0.05) dev.interval = dev.interval ? 0.7 * dev.interval + 0.3 * gap : gap;
    }
    dev.lastSeen = now;
    if (d.metrics && Object.keys(d.metrics).length) dev.lastData = now;
  } else if (d.last_seen) {
    // server clock -> age; tolerant of clock skew between browser and daemon
    dev.lastSeen = d.age_s !== null && d.age_s !== undefined ? now - d.age_s * 1000 : d.last_seen * 1000;
    // time of the last reading that carried values (device clock; an offline reading carries none)
    const ts = d.timestamp ? Date.parse(d.timestamp) : NaN;
    if (!dev.lastData) dev.lastData = Number.isFinite(ts) ? Math.min(ts, dev.lastSeen) : dev.lastSeen;
  }
  return dev;
}

function deviceStatus(dev) {
  if (!dev.online) return "offline";
  const age = (Date.now() - dev.lastSeen) / 1000;
  const limit = Math.max(60, 3 * (dev.interval || 20));
  if (dev.lastSeen && age > limit) return "stale";
  if (dev.comms === "failed") return "stale";
  return "online";
}

// ------------------------------------------------------------------ power flow

function flowDevices() {
  // sites (derived devices site:<name>) balance by construction: when there are any, the flow shows only them;
  // otherwise each device that reports power is shown on its own (never summed: that could count a flow twice)
  const sites = [...state.devices.values()].filter((d) => d.device_type === "site");
  if (sites.length) return sites.sort((a, b) => a.device_id.localeCompare(b.device_id));
  const cands = [...state.devices.values()].filter((d) => FLOW.some((m) => typeof d.metrics[m] === "number"));
  cands.sort((a, b) => FLOW.filter((m) => typeof b.metrics[m] === "number").length -
                       FLOW.filter((m) => typeof a.metrics[m] === "number").length ||
                       a.device_id.localeCompare(b.device_id));
  return cands;
}

// the default view: the device with the most history (a day back-filled beats a gateway seen once),
// then the one with the most power-flow metrics
function bestByHistory(ids) {
  const w = (id) => state.historyWeight.get(id) || 0;
  return ids.reduce((best, id) => (w(id) > w(best) ? id : best), ids[0]);
}

function renderSiteSelect(cands) {
  const sel = $("flow-site");
  const want = cands.map((d) => d.device_id + "=" + titleOf(d)).join("|");
  if (sel.dataset.opts !== want) {
    sel.replaceChildren(...cands.map((d) => el("option", { value: d.device_id, text: titleOf(d) })));
    sel.dataset.opts = want;
  }
  if (!cands.some((d) => d.device_id === state.site)) state.siteChosen = false;
  if (!state.siteChosen) state.site = cands.length ? bestByHistory(cands.map((d) => d.device_id)) : "";
  sel.value = state.site;
}

function setFlow(id, w, linkId, reverse) {
  const t = $(id);
  t.textContent = w === null ? "–" : fmtW(Math.abs(w));
  t.dataset.w = w === null ? "" : String(Math.round(w));
  const link = $(linkId);
  const on = w !== null && Math.abs(w) >= 5 && !$("flow").classList.contains("stale");
  link.classList.toggle("on", on);
  link.classList.toggle("rev", on && reverse);
}

function renderFlow() {
  const cands = flowDevices();
  renderSiteSelect(cands);
  const dev = cands.find((d) => d.device_id === state.site);
  const num = (m) => (dev && typeof dev.metrics[m] === "number" ? dev.metrics[m] : null);
  const pv = num("pv_power_w"), grid = num("grid_power_w"), bat = num("battery_power_w");
  let load = num("load_power_w");
  if (load === null && (pv !== null || grid !== null || bat !== null)) {
    load = Math.max(0, (pv || 0) + (grid || 0) + (bat || 0)); // energy balance when the device has no load meter
  }
  const site = dev && dev.device_type === "site" ? dev.site || {} : null;
  const members = site ? (site.members || []).map((id) => state.devices.get(id)).filter(Boolean) : [];
  const devs = dev ? [dev, ...members] : [];
  const down = devs.filter((d) => deviceStatus(d) !== "online");
  $("flow").classList.toggle("stale", !!dev && deviceStatus(dev) !== "online");
  // link paths run node -> hub for PV, grid and battery, and hub -> home
  setFlow("flow-pv-w", pv, "link-pv", false);
  setFlow("flow-grid-w", grid, "link-grid", grid !== null && grid < 0);
  // the battery link is drawn hub -> battery (charging direction): discharge runs it in reverse
  setFlow("flow-battery-w", bat, "link-battery", bat !== null && bat > 0);
  setFlow("flow-home-w", load, "link-home", false);
  $("flow-grid-dir").textContent = grid === null ? "" : grid > 5 ? "importing" : grid < -5 ? "exporting" : "idle";
  $("flow-battery-dir").textContent = bat === null ? "" : bat > 5 ? "discharging" : bat < -5 ? "charging" : "idle";
  const soc = num("battery_soc_pct");
  $("battery-soc").textContent = soc !== null ? Math.round(soc) + "%" : "–";
  const gridOff = devs.some((d) => d.metrics.grid_available === false);
  $("node-grid").classList.toggle("off", gridOff);
  $("grid-label").textContent = gridOff ? "Grid OFF" : "Grid";
  // a measured load that disagrees with pv + grid + battery: show by how much rather than hide it
  const residual = num("balance_residual_w");
  const through = Math.max(Math.abs(load || 0), (pv || 0) + Math.max(grid || 0, 0) + Math.max(bat || 0, 0));
  const showResidual = residual !== null && Math.abs(residual) >= Math.max(20, 0.01 * through);
  const res = $("flow-residual");
  res.textContent = showResidual ? `residual ${fmtW(residual)}` : "";
  res.dataset.w = residual === null ? "" : String(Math.round(residual));
  let note = "";
  if (!cands.length) note = "No device reports power yet.";
  else if (down.length) note = down.map((d) => `${d.name || d.device_id} is ${deviceStatus(d)}` +
                                       ` (last data ${ago(d.lastData || d.lastSeen)})`).join("; ") + ": values may be out of date.";
  else note = "updated " + ago(Math.max(...devs.map((d) => d.lastData || d.lastSeen)));
  if (site && site.stale && site.stale.length) note += ` Not counted (no recent data): ${site.stale.join(", ")}.`;
  if (showResidual) note += ` Measured flows disagree: solar + grid + battery − home = ${fmtW(residual)}.`;
  $("flow-note").textContent = note;
}

// ------------------------------------------------------------------ energy (per day, month or year of a site)

const ENERGY_BARS = [["pv", "Solar"], ["load", "Home"], ["import", "Import"], ["export", "Export"]];
// the SVG namespace, taken from the page (no URL in the script: the dashboard loads nothing from outside)
const SVG_NS = document.getElementById("flow").namespaceURI;
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function loadSites() {
  let sites;
  try {
    const r = await fetch("/api/sites");
    if (!r.ok) { $("energy-note").textContent = (await r.json()).detail || "energy unavailable"; return; }
    sites = await r.json();
  } catch (e) { return; }
  const names = sites.map((s) => s.name);
  const sel = $("energy-site");
  if (sel.dataset.opts !== names.join("|")) {
    sel.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    sel.dataset.opts = names.join("|");
  }
  if (!names.includes(state.energySite)) state.energySite = names[0] || "";
  sel.value = state.energySite;
  if (!names.length) $("energy-note").textContent = "No site yet: sites appear with the first readings.";
}

let energySeq = 0;
async function loadEnergy() {
  if (!state.energySite) return;
  const seq = ++energySeq;
  let data;
  try {
    const r = await fetch("/api/energy?" + new URLSearchParams({ site: state.energySite, by: state.energyBy }));
    data = await r.json();
    if (seq !== energySeq) return;
    if (!r.ok) { state.energy = null; drawEnergy(); $("energy-note").textContent = data.detail; return; }
  } catch (e) { $("energy-note").textContent = "energy request failed"; return; }
  state.energy = data;
  drawEnergy();
}

function periodLabel(iso, by) {
  const d = new Date(iso.slice(0, 19)); // the period's local wall time, as the daemon gives it
  if (by === "year") return String(d.getFullYear());
  if (by === "month") return d.toLocaleDateString(undefined, { month: "short", year: "2-digit" });
  return d.toLocaleDateString(undefined, { day: "numeric", month: "short" });
}

function drawEnergy() {
  const svg = $("energy-chart");
  const data = state.energy;
  const width = Math.max(280, svg.clientWidth || svg.parentElement.clientWidth || 600), height = 230;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  if (!data) { svg.dataset.bars = "0"; svg.dataset.periods = "0"; return; }
  const periods = data.periods;
  const left = 62, right = 8, top = 10, bottom = 26;
  const plotW = width - left - right, plotH = height - top - bottom;
  let max = 0;
  for (const p of periods) for (const [k] of ENERGY_BARS) if (p.kwh[k] !== null) max = Math.max(max, p.kwh[k]);
  const ticks = niceTicks(0, max > 0 ? max : 1, 4).filter((t) => t >= 0);
  const yMax = Math.max(ticks[ticks.length - 1] || 1, max);
  const y = (v) => top + plotH - (v / yMax) * plotH;
  for (const t of ticks) {
    svg.append(svgEl("line", { class: "eg-grid", x1: left, x2: width - right, y1: y(t), y2: y(t) }));
    svg.append(svgEl("text", { class: "eg-axis", x: left - 6, y: y(t) + 4, "text-anchor": "end" },
                     (t >= 100 ? t.toFixed(0) : +t.toFixed(2)) + (t === ticks[ticks.length - 1] ? " kWh" : "")));
  }
  const slot = plotW / Math.max(1, periods.length);
  const barW = Math.max(1, (slot * 0.8) / ENERGY_BARS.length);
  const every = Math.ceil(periods.length / Math.max(1, Math.floor(plotW / 56)));
  let bars = 0;
  periods.forEach((p, i) => {
    const x0 = left + i * slot + slot * 0.1;
    const g = svgEl("g", { class: "eg-period", "data-start": p.start });
    ENERGY_BARS.forEach(([k, label], j) => {
      const v = p.kwh[k];
      if (v === null || v === undefined) return;
      const h = Math.max(v > 0 ? 1 : 0, (v / yMax) * plotH);
      const rect = svgEl("rect", { class: `bar bar-${k}`, x: x0 + j * barW, y: top + plotH - h, width: Math.max(1, barW - 1),
                                   height: h, "data-kwh": String(v) });
      rect.append(svgEl("title", {}, `${periodLabel(p.start, data.by)} · ${label}: ${v.toFixed(2)} kWh`));
      g.append(rect);
      if (v > 0) bars++;
    });
    svg.append(g);
    if (i % every === 0) {
      svg.append(svgEl("text", { class: "eg-axis", x: left + i * slot + slot / 2, y: height - 8, "text-anchor": "middle" },
                       periodLabel(p.start, data.by)));
    }
  });
  svg.dataset.bars = String(bars);
  svg.dataset.periods = String(periods.filter((p) => p.kwh.pv !== null || p.kwh.load !== null).length);
  const t = data.totals;
  const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(1) + " kWh");
  let note = `Solar ${fmt(t.pv)} · home ${fmt(t.load)} · import ${fmt(t.import)} · export ${fmt(t.export)}` +
    ` · self-consumed ${fmt(t.self_consumption)}`;
  if (data.derived && data.derived.length) note += ` (from power, no counter: ${data.derived.join(", ")})`;
  $("energy-note").textContent = note;
}

// ------------------------------------------------------------------ device cards

const CARD_METRICS = [
  ["pv_power_w", "Solar"], ["battery_power_w", "Battery"], ["grid_power_w", "Grid"], ["load_power_w", "Home"],
  ["pv_energy_today_wh", "Solar today"], ["inverter_temperature_c", "Inverter"],
];

const cards = new Map(); // device_id -> {card, body, controls, sig}

function renderDevices() {
  const box = $("devices");
  // devices with power-flow metrics first (inverters, gateways), then parts (optimizers, meters), by id
  const rank = (d) => FLOW.filter((m) => typeof d.metrics[m] === "number").length;
  const devs = [...state.devices.values()].sort((a, b) => (rank(b) > 0) - (rank(a) > 0) ||
                                                        a.device_id.localeCompare(b.device_id));
  assignTitles();
  $("dev-count").textContent = devs.length ? `${devs.filter((d) => deviceStatus(d) === "online").length} of ${devs.length} online` : "";
  if (!devs.length) return;
  if (!cards.size) box.replaceChildren();
  let idx = 0;
  for (const d of devs) {
    let c = cards.get(d.device_id);
    if (!c) {
      // the card is built once; its body is redrawn, its controls only when the device's controls change,
      // so a value being typed survives the live updates
      const card = el("article", { class: "dev", "data-device": d.device_id });
      const body = el("div");
      const controls = el("div", { class: "controls-box" });
      card.append(body, controls);
      c = { card, body, controls, sig: "" };
      cards.set(d.device_id, c);
    }
    // keep the cards in sort order; move a card only when out of place (moving would blur a focused input)
    if (box.children[idx] !== c.card) box.insertBefore(c.card, box.children[idx] || null);
    idx++;
    const st = deviceStatus(d);
    c.card.className = "dev " + st;
    c.card.dataset.status = st;
    c.body.replaceChildren(...cardBody(d, st));
    const sig = JSON.stringify(d.controls || []);
    if (sig !== c.sig) {
      c.sig = sig;
      c.controls.replaceChildren(...controlsFor(d));
    }
    syncControlStates(d, c.controls);
  }
}

function cardBody(d, st) {
  const dl = el("dl");
  const add = (k, v, cls) => { dl.append(el("dt", { text: k }), el("dd", cls ? { class: cls, text: v } : { text: v })); };
  let shown = 0;
  for (const [m, label] of CARD_METRICS) {
    if (d.metrics[m] !== undefined) { add(label, fmtValue(d.metrics[m], unitOf(m))); shown++; }
  }
  if (!shown) {
    // devices without canonical power metrics: show their first few values
    for (const [m, v] of Object.entries(d.metrics).slice(0, 4)) add(metricLabel(m), fmtValue(v, unitOf(m)));
  }
  if (d.metrics.grid_available !== undefined) {
    add("Grid supply", d.metrics.grid_available ? "on" : "OFF", d.metrics.grid_available ? "" : "grid-off");
  }
  add("Last data", ago(d.lastData || d.lastSeen));
  add("Comms", d.comms || "–");
  const out = [
    el("span", { class: "badge " + st, text: st }),
    el("h3", { text: titleOf(d), title: titleOf(d) }),
    el("div", { class: "ident", text: [d.device_type, d.model, d.serial && d.serial !== d.name ? d.serial : ""].filter(Boolean).join(" · ") }),
  ];
  if (typeof d.metrics.battery_soc_pct === "number") {
    const soc = Math.max(0, Math.min(100, d.metrics.battery_soc_pct));
    out.push(el("div", { class: "soc", title: `battery ${soc.toFixed(0)}%`, role: "meter", "aria-valuemin": "0",
                         "aria-valuemax": "100", "aria-valuenow": soc.toFixed(0) }, el("i", { style: `width:${soc}%` })));
    add("SOC", soc.toFixed(0) + " %");
  }
  out.push(dl);
  out.push(...detailSections(d));
  if (st === "offline") out.push(el("div", { class: "why", text: `No comms with this device. Values are from ${ago(d.lastData || d.lastSeen)}.` }));
  else if (st === "stale") out.push(el("div", { class: "why", text: `No new data for ${ago(d.lastData || d.lastSeen).replace(" ago", "")}.` }));
  return out;
}

// per-phase figures (metrics ending _l1.._l3) and per-cell battery figures, in collapsible sections
const PHASE_COLS = [["grid_voltage_v", "Grid V"], ["grid_current_a", "Grid A"], ["grid_power_w", "Grid W"],
                    ["inverter_power_w", "Inv W"], ["eps_power_w", "EPS W"]];

function detailSections(d) {
  const out = [];
  const section = (key, title, content) => {
    const id = `${d.device_id}|${key}`;
    const det = el("details", { class: "more" }, el("summary", { text: title }), content);
    if (state.openDetails.has(id)) det.open = true;
    det.addEventListener("toggle", () => { if (det.open) state.openDetails.add(id); else state.openDetails.delete(id); });
    out.push(det);
  };
  const cols = PHASE_COLS.filter(([m]) => d.metrics[m + "_l1"] !== undefined);
  if (cols.length) {
    const head = el("tr", {}, el("th"), ...cols.map(([, t]) => el("th", { text: t })));
    const rows = [1, 2, 3].map((n) => el("tr", {}, el("th", { text: "L" + n }),
      ...cols.map(([m]) => {
        const v = d.metrics[`${m}_l${n}`];
        return el("td", { text: typeof v !== "number" ? "–" : m.endsWith("_w") ? String(Math.round(v)) : v.toFixed(1) });
      })));
    section("phases", "Phases", el("table", { class: "phases" }, head, ...rows));
  }
  // cells: battery_<n>_cell_<i>_voltage_v (LV packs), battery_module_<m>_cell_<i>_voltage_v (HV modules)
  const units = new Map();
  for (const [m, v] of Object.entries(d.metrics)) {
    const x = /^(battery_(?:module_)?\d+)_cell_(\d+)_voltage_v$/.exec(m);
    if (x && typeof v === "number") {
      if (!units.has(x[1])) units.set(x[1], []);
      units.get(x[1])[Number(x[2]) - 1] = v;
    }
  }
  if (units.size) {
    const lines = [...units.entries()].map(([u, cells]) => {
      const vs = cells.filter((v) => typeof v === "number");
      const t = d.metrics[`${u}_temperature_c`];
      const name = u.replace("battery_module_", "Module ").replace("battery_", "Battery ");
      return el("div", { class: "cells", title: vs.map((v) => v.toFixed(3)).join(" ") },
        el("b", { text: name }), ` ${vs.length} cells ${Math.min(...vs).toFixed(3)}–${Math.max(...vs).toFixed(3)} V` +
        (typeof t === "number" ? `, max ${t.toFixed(1)} °C` : ""));
    });
    section("cells", `Cells (${units.size} ${units.size === 1 ? "unit" : "units"})`, el("div", {}, ...lines));
  }
  return out;
}

// ------------------------------------------------------------------ controls

function controlsFor(d) {
  const specs = d.controls || [];
  if (!specs.length) return [];
  const box = el("details", { class: "controls" }, el("summary", { text: `Controls (${specs.length})` }));
  for (const c of specs) {
    // novalidate: the daemon checks the value and answers with the allowed range in plain words
    const row = el("form", { class: "ctl", "data-control": c.name, novalidate: "" });
    const label = el("label", { text: (c.label || c.name) + (c.unit ? ` (${c.unit})` : "") });
    let input;
    if (c.kind === "switch") {
      input = el("select", { name: "value", "aria-label": c.label || c.name },
                 el("option", { value: "true", text: "on" }), el("option", { value: "false", text: "off" }));
    } else if (c.kind === "select") {
      input = el("select", { name: "value", "aria-label": c.label || c.name },
                 ...c.options.map((o) => el("option", { value: o, text: o })));
    } else if (c.kind === "number") {
      const a = { type: "number", name: "value", "aria-label": c.label || c.name, inputmode: "decimal" };
      if (c.minimum !== null) a.min = c.minimum;
      if (c.maximum !== null) a.max = c.maximum;
      a.step = c.step !== null ? c.step : "any";
      input = el("input", a);
    } else if (c.kind === "button") {
      input = null;
    } else {
      input = el("input", { type: c.kind === "time" ? "time" : "text", name: "value", "aria-label": c.label || c.name });
    }
    const btn = el("button", { type: "submit", text: c.kind === "button" ? (c.label || c.name) : "Set" });
    const msg = el("span", { class: "ctl-msg", "aria-live": "polite" });
    row.append(label);
    if (input) row.append(input);
    row.append(btn, msg);
    row.addEventListener("submit", (ev) => { ev.preventDefault(); sendControl(d.device_id, c, input, msg, btn); });
    box.append(row);
  }
  return [box];
}

function syncControlStates(d, box) {
  // show the device's current value in inputs the user is not editing
  for (const c of d.controls || []) {
    if (!c.state_metric || d.metrics[c.state_metric] === undefined) continue;
    const input = box.querySelector(`form[data-control="${CSS.escape(c.name)}"] [name="value"]`);
    if (!input || input === document.activeElement || input.dataset.touched) continue;
    const v = d.metrics[c.state_metric];
    input.value = typeof v === "boolean" ? String(v) : String(v);
  }
}

async function sendControl(deviceId, c, input, msg, btn) {
  let value = null;
  if (input) {
    value = input.value;
    if (c.kind === "number") value = value === "" ? null : Number(value);
    else if (c.kind === "switch") value = value === "true";
  }
  btn.disabled = true;
  msg.className = "ctl-msg";
  msg.textContent = "sending…";
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("sb.token");
  if (token) headers.Authorization = "Bearer " + token;
  try {
    const r = await fetch(`/api/devices/${encodeURIComponent(deviceId)}/control`,
                          { method: "POST", headers, body: JSON.stringify({ command: c.name, value }) });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401 || r.status === 403) {
      const t = prompt(r.status === 401 ? "This daemon needs its API token for controls:" : "That token was refused. Token:");
      if (t) { sessionStorage.setItem("sb.token", t); btn.disabled = false; return sendControl(deviceId, c, input, msg, btn); }
    }
    msg.className = "ctl-msg " + (r.ok ? "ok" : "bad");
    msg.textContent = r.ok ? (body.message || "done") : (body.detail || `failed (${r.status})`);
    if (input) delete input.dataset.touched;
  } catch (e) {
    msg.className = "ctl-msg bad";
    msg.textContent = "no answer from the daemon";
  } finally {
    btn.disabled = false;
  }
}

// ------------------------------------------------------------------ history plot

async function loadSeries() {
  try {
    const r = await fetch("/api/history/series");
    if (!r.ok) { $("hist-note").textContent = (await r.json()).detail || "history unavailable"; return; }
    state.series = await r.json();
  } catch (e) { return; }
  const devSel = $("hist-device");
  const devices = [...new Set(state.series.map((s) => s.device_id))];
  if (!devices.length) { $("hist-note").textContent = "No history yet."; return; }
  await weighHistory(devices);
  if (!devices.includes(state.histDevice)) {
    // default: the power-flow site the user picked, else the device with the most history
    state.histDevice = state.siteChosen && devices.includes(state.site) ? state.site : bestByHistory(devices);
  }
  assignTitles();
  const title = (id) => (state.devices.has(id) ? titleOf(state.devices.get(id)) : id);
  const opts = devices.map((d) => d + "=" + title(d)).join("|");
  if (devSel.dataset.opts !== opts) {
    devSel.replaceChildren(...devices.map((d) => el("option", { value: d, text: title(d) })));
    devSel.dataset.opts = opts;
  }
  devSel.value = state.histDevice;
  fillMetrics();
}

// how much history each device has: buckets of its first power-flow metric (else its first metric) over
// a week, one small request per device, asked once (a device's history only grows)
async function weighHistory(devices) {
  const todo = devices.filter((d) => !state.historyWeight.has(d));
  await Promise.all(todo.map(async (dev) => {
    const metrics = state.series.filter((s) => s.device_id === dev).map((s) => s.metric);
    const metric = FLOW.find((m) => metrics.includes(m)) || metrics[0];
    let n = 0;
    try {
      const q = new URLSearchParams({ device: dev, metric, since: "7d", step: "3600s" });
      const r = await fetch("/api/history?" + q);
      if (r.ok) n = (await r.json()).count.reduce((a, b) => a + b, 0);
    } catch (e) { /* no weight: counts as none */ }
    state.historyWeight.set(dev, n);
  }));
  if (todo.length && !state.siteChosen) schedule();
}

function fillMetrics() {
  const metrics = state.series.filter((s) => s.device_id === state.histDevice).map((s) => s.metric);
  const sel = $("hist-metric");
  if (sel.dataset.opts !== metrics.join("|")) {
    sel.replaceChildren(...metrics.map((m) => el("option", { value: m, text: metricLabel(m) + (unitOf(m) ? ` (${unitOf(m)})` : "") })));
    sel.dataset.opts = metrics.join("|");
  }
  if (!metrics.includes(state.histMetric)) state.histMetric = FLOW.find((m) => metrics.includes(m)) || metrics[0] || "";
  sel.value = state.histMetric;
}

let histSeq = 0, lastHistoryLoad = 0;
async function loadHistory() {
  if (!state.histDevice || !state.histMetric) return;
  lastHistoryLoad = Date.now();
  const canvas = $("plot");
  const width = Math.max(100, canvas.clientWidth || 600);
  const range = state.range;
  // a "nice" step (multiples of 5 min from 5 min up) so buckets line up with the store's pre-aggregates
  const want = range / Math.min(720, width);
  const step = NICE_STEPS.find((x) => x >= want) || Math.ceil(want / 86400) * 86400;
  const q = new URLSearchParams({ device: state.histDevice, metric: state.histMetric, since: `${range}s`, step: `${step}s` });
  const seq = ++histSeq;
  const t0 = performance.now();
  let data;
  try {
    const r = await fetch("/api/history?" + q);
    data = await r.json();
    if (!r.ok) { if (seq === histSeq) { state.plot = null; drawPlot(); $("hist-note").textContent = data.detail; } return; }
  } catch (e) { $("hist-note").textContent = "history request failed"; return; }
  if (seq !== histSeq) return; // a newer request superseded this one
  state.plot = data;
  canvas.dataset.range = String(range);
  canvas.dataset.points = String(data.t.length);
  canvas.dataset.unit = data.unit || "";
  drawPlot();
  $("hist-note").textContent = `${data.t.length} points, ${fmtStep(data.step)} buckets (min/mean/max), ` +
    `loaded in ${Math.round(performance.now() - t0)} ms`;
  // a daemon that has just started may still be writing its back-fill: look again soon rather than in 30 s
  if (!data.t.length) setTimeout(() => { if (seq === histSeq) loadHistory(); }, 3000);
}
function fmtStep(s) { return s >= 3600 ? +(s / 3600).toFixed(1) + " h" : s >= 60 ? Math.round(s / 60) + " min" : s + " s"; }

function niceTicks(lo, hi, n) {
  if (!(hi - lo > Math.abs(hi) * 1e-9)) { const pad = Math.max(1, Math.abs(hi) * 0.05); hi += pad; lo -= pad; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const start = Math.floor(lo / step) * step, ticks = [];
  for (let v = start; v <= hi + step * 0.5; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function drawPlot(hoverX) {
  const canvas = $("plot");
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth, H = canvas.clientHeight;
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const css = getComputedStyle(document.documentElement);
  const ink = css.getPropertyValue("--muted").trim(), line = css.getPropertyValue("--line").trim();
  const color = { pv_power_w: "--pv", grid_power_w: "--grid", load_power_w: "--home", battery_power_w: "--bat",
                  battery_soc_pct: "--bat" }[state.histMetric] || "--grid";
  const c = css.getPropertyValue(color).trim();
  const d = state.plot;
  ctx.font = "11px system-ui, sans-serif";
  if (!d || !d.t.length) {
    ctx.fillStyle = ink; ctx.textAlign = "center";
    ctx.fillText(d ? "no data in this range" : "", W / 2, H / 2);
    return;
  }
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < d.t.length; i++) {
    if (d.min[i] !== null && d.min[i] < lo) lo = d.min[i];
    if (d.max[i] !== null && d.max[i] > hi) hi = d.max[i];
  }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  const yt = niceTicks(lo, hi, 5);
  lo = Math.min(lo, yt[0]); hi = Math.max(hi, yt[yt.length - 1]);
  const left = 52, right = 8, top = 18, bottom = 22;
  const x0 = d.since, x1 = d.until;
  const X = (t) => left + ((t - x0) / (x1 - x0)) * (W - left - right);
  const Y = (v) => top + (1 - (v - lo) / (hi - lo || 1)) * (H - top - bottom);
  // grid and y labels
  ctx.strokeStyle = line; ctx.fillStyle = ink; ctx.lineWidth = 1; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const unit = d.unit || "";
  const tickStep = yt.length > 1 ? Math.abs(yt[1] - yt[0]) : 1;
  const kilo = (unit === "W" || unit === "Wh") && Math.max(Math.abs(hi), Math.abs(lo)) >= 2000;
  const places = (x) => Math.max(0, Math.min(6, -Math.floor(Math.log10(x) + 1e-9)));
  const decimals = places(tickStep), kDecimals = places(tickStep / 1000);
  // the unit above the y labels ("kW" when the labels are in thousands)
  const shownUnit = kilo ? "k" + unit : unit;
  if (shownUnit) {
    ctx.save(); ctx.textAlign = "left"; ctx.textBaseline = "top"; ctx.font = "600 11px system-ui, sans-serif";
    ctx.fillText(shownUnit, 4, 0); ctx.restore();
  }
  for (const v of yt) {
    const y = Math.round(Y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W - right, y); ctx.stroke();
    const label = v === 0 ? "0" : kilo ? (v / 1000).toFixed(kDecimals) : v.toFixed(decimals);
    ctx.fillText(label, left - 6, y);
  }
  // x labels
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const span = x1 - x0, nx = Math.max(2, Math.floor((W - left) / 90));
  const xStep = [300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800].find((s) => span / s <= nx) || 86400 * 7;
  const tz = new Date().getTimezoneOffset() * 60;
  for (let t = Math.ceil((x0 - tz) / xStep) * xStep + tz; t <= x1; t += xStep) {
    const dt = new Date(t * 1000);
    const label = xStep >= 86400 ? dt.toLocaleDateString([], { weekday: "short", day: "numeric" })
      : dt.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    ctx.fillText(label, X(t), H - bottom + 5);
  }
  // min-max band, broken at gaps bigger than two buckets
  // a gap is a hole bigger than 2.5 buckets and 3x the usual spacing (sparse devices draw connected lines)
  const diffs = [];
  for (let i = 1; i < d.t.length; i++) diffs.push(d.t[i] - d.t[i - 1]);
  diffs.sort((a, b) => a - b);
  const typical = diffs.length ? diffs[Math.floor(diffs.length / 2)] : d.step;
  const gap = Math.max(d.step * 2.5, typical * 3);
  const runs = [];
  let run = [];
  for (let i = 0; i < d.t.length; i++) {
    if (d.mean[i] === null) continue;
    if (run.length && d.t[i] - d.t[run[run.length - 1]] > gap) { runs.push(run); run = []; }
    run.push(i);
  }
  if (run.length) runs.push(run);
  const mid = (i) => X(d.t[i] + d.step / 2);
  ctx.fillStyle = c; ctx.globalAlpha = 0.18;
  for (const r of runs) {
    ctx.beginPath();
    r.forEach((i, k) => (k ? ctx.lineTo(mid(i), Y(d.max[i])) : ctx.moveTo(mid(i), Y(d.max[i]))));
    for (let k = r.length - 1; k >= 0; k--) ctx.lineTo(mid(r[k]), Y(d.min[r[k]]));
    ctx.closePath(); ctx.fill();
  }
  ctx.globalAlpha = 1; ctx.strokeStyle = c; ctx.lineWidth = 1.6;
  for (const r of runs) {
    ctx.beginPath();
    r.forEach((i, k) => (k ? ctx.lineTo(mid(i), Y(d.mean[i])) : ctx.moveTo(mid(i), Y(d.mean[i]))));
    if (r.length === 1) ctx.arc(mid(r[0]), Y(d.mean[r[0]]), 2, 0, 2 * Math.PI);
    ctx.stroke();
  }
  // hover
  const tip = $("tip");
  if (hoverX === undefined || hoverX < left) { tip.hidden = true; return; }
  const t = x0 + ((hoverX - left) / (W - left - right)) * (x1 - x0);
  let best = -1, bd = Infinity;
  for (let i = 0; i < d.t.length; i++) {
    const dd = Math.abs(d.t[i] + d.step / 2 - t);
    if (dd < bd && d.mean[i] !== null) { bd = dd; best = i; }
  }
  if (best < 0) { tip.hidden = true; return; }
  const bx = mid(best);
  ctx.strokeStyle = ink; ctx.lineWidth = 1; ctx.setLineDash([3, 3]);
  ctx.beginPath(); ctx.moveTo(bx, top); ctx.lineTo(bx, H - bottom); ctx.stroke(); ctx.setLineDash([]);
  const f = (v) => fmtValue(v, unit);
  tip.textContent = `${new Date(d.t[best] * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" })}` +
    `  mean ${f(d.mean[best])}  min ${f(d.min[best])}  max ${f(d.max[best])}`;
  tip.hidden = false;
  tip.style.left = Math.max(0, Math.min(bx + 8, W - tip.offsetWidth)) + "px";
}

function setRange(r) {
  state.range = r;
  localStorage.setItem("sb.range", String(r));
  for (const b of document.querySelectorAll(".ranges button[data-range]")) b.setAttribute("aria-pressed", String(Number(b.dataset.range) === r));
  loadHistory();
}

// ------------------------------------------------------------------ health

// The table is drawn from the last answer of /api/health, with ages computed at draw time (every second), so
// "last success" keeps ageing. When the daemon stops answering (or the live stream drops), the panel says so:
// no component is shown as running and the status badge is not "ok".
async function loadHealth() {
  try {
    const r = await fetch("/api/health", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    state.healthData = await r.json();
    state.healthOk = true;
    state.healthAt = Date.now();
  } catch (e) {
    healthLost();
    return;
  }
  renderHealth();
}

function healthLost() {
  if (state.healthOk === false) return;
  state.healthOk = false;
  state.healthLostAt = Date.now();
  renderHealth();
}

function renderHealth() {
  const h = state.healthData;
  const badge = $("health-status");
  const up = state.healthOk !== false;
  if (!up) {
    badge.textContent = "not answering"; badge.className = "badge down";
    badge.dataset.status = "down";
  } else if (h) {
    badge.textContent = h.status; badge.className = "badge " + h.status;
    badge.dataset.status = h.status;
  }
  if (!h) return;
  const rows = [];
  for (const c of h.components) {
    state.health.set(c.name, c);
    const backlog = c.queue_depth === null || c.queue_depth === undefined ? "–" : `${c.queue_depth} + ${c.pending ?? 0}`;
    const st = up ? c.state : "unknown";
    rows.push(el("tr", { "data-component": c.name, class: c.last_error ? "has-err" : "" },
      el("td", {}, c.name, el("span", { class: "kind", text: `${c.kind} · ${c.type}` })),
      el("td", {}, el("span", { class: "badge " + st, text: st })),
      el("td", { text: c.last_success ? ago(c.last_success * 1000) : "never" }),
      el("td", { class: "num", text: backlog }),
      el("td", { class: "num", text: c.dropped ?? "–" })));
    if (c.last_error) {
      const since = c.error_since ? ` (since ${ago(c.error_since * 1000)}, ${c.restarts} restarts)` : "";
      rows.push(el("tr", { class: "err-row" }, el("td", { class: "err", colspan: "5", text: c.last_error + since })));
    }
  }
  $("health").tBodies[0].replaceChildren(...rows);
  $("health-summary").textContent = up
    ? `${h.readings} readings · ${h.devices_online}/${h.devices} devices online · up ${fmtStep(Math.round(h.uptime_s))}`
    : `the daemon is not answering (since ${ago(state.healthLostAt)}); last figures from ${ago(state.healthAt)}`;
  if (up) {
    for (const dev of state.devices.values()) {
      const src = state.health.get(dev.source);
      if (src) dev.comms = src.state;
    }
  }
}

async function loadDevices() {
  try {
    const r = await fetch("/api/devices");
    if (!r.ok) return;
    for (const d of await r.json()) {
      const dev = upsertDevice(d, false);
      dev.comms = d.comms;
    }
    schedule();
  } catch (e) { /* the live stream reports connection problems */ }
}

// ------------------------------------------------------------------ live stream

function schedule() {
  if (state.dirty) return;
  state.dirty = true;
  requestAnimationFrame(() => { state.dirty = false; renderFlow(); renderDevices(); });
}

function connect() {
  const es = new EventSource("/api/events");
  const conn = $("conn"), text = $("conn-text");
  es.onopen = () => { conn.dataset.state = "live"; text.textContent = "live"; loadHealth(); };
  es.onerror = () => { conn.dataset.state = "down"; text.textContent = "reconnecting…"; healthLost(); };
  es.addEventListener("device", (ev) => { upsertDevice(JSON.parse(ev.data), false); schedule(); });
  es.addEventListener("reading", (ev) => {
    const r = JSON.parse(ev.data);
    upsertDevice(r, true);
    schedule();
    // the 1 h plot follows live data (at most one reload per 10 s)
    if (state.range <= 3600 && r.device_id === state.histDevice && r.metrics && state.histMetric in r.metrics &&
        Date.now() - lastHistoryLoad > 10000) loadHistory();
  });
}

// ------------------------------------------------------------------ wiring

function init() {
  for (const b of document.querySelectorAll(".ranges button[data-range]")) b.addEventListener("click", () => setRange(Number(b.dataset.range)));
  setRange(state.range);
  $("energy-site").addEventListener("change", (e) => {
    state.energySite = e.target.value; localStorage.setItem("sb.energySite", state.energySite); loadEnergy();
  });
  for (const b of document.querySelectorAll("button[data-by]")) {
    b.setAttribute("aria-pressed", String(b.dataset.by === state.energyBy));
    b.addEventListener("click", () => {
      state.energyBy = b.dataset.by; localStorage.setItem("sb.energyBy", state.energyBy);
      for (const o of document.querySelectorAll("button[data-by]")) o.setAttribute("aria-pressed", String(o === b));
      loadEnergy();
    });
  }
  window.addEventListener("resize", () => drawEnergy());
  $("flow-site").addEventListener("change", (e) => {
    state.site = e.target.value; state.siteChosen = true; localStorage.setItem("sb.site", state.site); renderFlow();
  });
  $("hist-device").addEventListener("change", (e) => {
    state.histDevice = e.target.value; localStorage.setItem("sb.histDevice", state.histDevice); fillMetrics(); loadHistory();
  });
  $("hist-metric").addEventListener("change", (e) => {
    state.histMetric = e.target.value; localStorage.setItem("sb.histMetric", state.histMetric); loadHistory();
  });
  $("devices").addEventListener("input", (e) => { if (e.target.name === "value") e.target.dataset.touched = "1"; });
  const canvas = $("plot");
  canvas.addEventListener("mousemove", (e) => drawPlot(e.offsetX));
  canvas.addEventListener("mouseleave", () => drawPlot());
  canvas.addEventListener("touchstart", (e) => drawPlot(e.touches[0].clientX - canvas.getBoundingClientRect().left), { passive: true });
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => drawPlot(), 100); });
  connect();
  loadDevices();
  loadHealth();
  loadSeries().then(loadHistory);
  setInterval(() => { renderDevices(); renderFlow(); renderHealth(); }, 1000);   // ages and stale detection
  setInterval(loadHealth, 5000);
  setInterval(loadDevices, 15000);
  setInterval(() => loadSeries().then(loadHistory), 30000);
  loadSites().then(loadEnergy);
  setInterval(() => loadSites().then(loadEnergy), 60000);
}
init();
