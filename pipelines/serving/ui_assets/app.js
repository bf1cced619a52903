// The forecast page: calls the public API (GET /events, POST /predict_full) like any client.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { calendar: null, forecast: null, results: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.setAttribute("style", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function headers(json) {
  const h = json ? { "content-type": "application/json" } : {};
  const key = $("#apikey").value.trim();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function call(method, path, body) {
  const r = await fetch(path, {
    method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const where = (data.detail && data.detail[0] && data.detail[0].loc || []).join(".");
    throw new Error(`HTTP ${r.status}: ${data.error || r.statusText}${where ? ` (${where})` : ""}`);
  }
  return data;
}

function status(text, isError = false) {
  const s = $("#status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

const pct = (p) => (p == null ? "–" : `${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`);

function bar(kind, p) {
  const width = Math.max(0, Math.min(1, p || 0)) * 100;
  return el("div", { class: `bar ${kind}`, "data-value": String(p) },
    el("span", { style: `width:${width.toFixed(1)}%` }), el("em", {}, pct(p)));
}

async function loadCalendar(season) {
  state.calendar = await call("GET", season ? `/events?season=${season}` : "/events");
  const cal = state.calendar;
  const seasonSel = $("#season");
  if (!seasonSel.options.length) {
    for (const s of [...cal.seasons].reverse()) seasonSel.append(el("option", { value: s }, s));
  }
  seasonSel.value = String(cal.season);
  const roundSel = $("#round");
  roundSel.replaceChildren(...cal.events.map((e) =>
    el("option", { value: e.round }, `${e.round}. ${e.name}${e.has_results ? "" : " (upcoming)"}`)));
  const next = cal.next_event && cal.next_event.season === cal.season ? cal.next_event : null;
  const last = cal.events.filter((e) => e.has_results).pop() || cal.events[cal.events.length - 1];
  roundSel.value = String((next || last).round);
}

async function predict() {
  const season = Number($("#season").value);
  const round = Number($("#round").value);
  const ev = state.calendar.events.find((e) => e.round === round);
  $("#event-title").textContent = `${season} ${ev ? ev.name : `round ${round}`}`;
  status("Predicting…");
  $("#explanation").hidden = true;
  try {
    const [forecast, results] = await Promise.all([
      call("POST", "/predict_full", { event: { season, round }, explain: true }),
      ev && ev.has_results ? call("GET", `/events/${season}/${round}`) : Promise.resolve(null),
    ]);
    state.forecast = forecast;
    state.results = results;
    render();
    const warnings = forecast.metadata.warnings || [];
    const notes = warnings.length ? `Note: ${warnings.join(" | ")}. ` : "";
    status(`${notes}Click a driver to see why.`);
  } catch (err) {
    $("#grid").hidden = true;
    status(err.message, true);
  }
}

function render() {
  const f = state.forecast;
  const race = new Map(f.race_winner_predictions.map((r) => [r.driver_id, r]));
  const actualQ = new Map((state.results ? state.results.qualifying : []).map((q) => [q.driver_id, q]));
  const actualR = new Map((state.results ? state.results.race : []).map((r) => [r.driver_id, r]));
  const rows = f.qualifying_predictions.map((q) => {
    const r = race.get(q.driver_id) || {};
    const aq = actualQ.get(q.driver_id);
    const ar = actualR.get(q.driver_id);
    const tr = el("tr", { "data-driver": q.driver_id },
      el("td", { class: "num grid" }, q.grid_position_estimate),
      el("td", { class: "driver" }, q.driver_name || q.driver_id),
      el("td", { class: "team" }, q.constructor_name || q.constructor_id || ""),
      el("td", { class: "num lap" }, q.predicted_time == null ? "–" : q.predicted_time.toFixed(3)),
      el("td", { class: "num gap" }, `+${q.predicted_gap_to_pole_pct.toFixed(3)}%`),
      el("td", { class: "pole" }, bar("pole", q.probability_score)),
      el("td", { class: "win" }, bar("win", r.win_probability)),
      el("td", { class: "podium" }, bar("podium", r.podium_probability)),
      el("td", { class: "points" }, bar("points", r.points_probability)),
      el("td", { class: "num actual quali" }, aq && aq.position != null ? aq.position : "–"),
      el("td", { class: "num actual race" }, ar ? ar.status : "–"));
    tr.addEventListener("click", () => explain(q.driver_id, tr));
    return tr;
  });
  $("#grid tbody").replaceChildren(...rows);
  $("#grid").classList.toggle("past", Boolean(state.results));
  $("#grid").hidden = false;
}

function contributions(title, expl, higherIsWorse) {
  const box = el("div", {}, el("h4", {}, title));
  if (!expl) {
    box.append(el("p", {}, "No explanation in this answer."));
    return box;
  }
  const items = expl.contributions;
  const scale = Math.max(...items.map((c) => Math.abs(c.value)), 1e-9);
  box.append(el("p", { class: "base" }, `Typical driver: ${expl.base.toFixed(3)} ${expl.unit}`));
  for (const c of items) {
    const worse = higherIsWorse ? c.value > 0 : c.value < 0;
    const width = (50 * Math.abs(c.value)) / scale;
    const left = c.value >= 0 ? 50 : 50 - width;
    box.append(el("div", { class: "row", "data-feature": c.feature },
      el("span", { class: "label" }, c.label),
      el("div", { class: `track ${worse ? "up" : "down"}` },
        el("span", { style: `left:${left.toFixed(1)}%;width:${width.toFixed(1)}%` })),
      el("span", { class: "value" }, `${c.value >= 0 ? "+" : ""}${c.value.toFixed(3)}`)));
  }
  return box;
}

function explain(driverId, tr) {
  for (const row of document.querySelectorAll("#grid tbody tr")) row.classList.remove("selected");
  tr.classList.add("selected");
  const q = state.forecast.qualifying_predictions.find((p) => p.driver_id === driverId);
  const r = state.forecast.race_winner_predictions.find((p) => p.driver_id === driverId);
  $("#explanation-title").textContent = `Why: ${q.driver_name || driverId}`;
  $("#why-quali").replaceChildren(contributions(
    `Qualifying gap to pole (${q.predicted_gap_to_pole_pct.toFixed(3)}%)`, q.explanation, true));
  $("#why-race").replaceChildren(contributions(
    `Win chance (${pct(r && r.win_probability)})`, r && r.explanation, false));
  $("#explanation").hidden = false;
}

async function start() {
  try {
    await loadCalendar();
    await predict();
  } catch (err) {
    status(err.message, true);
  }
  $("#season").addEventListener("change", async () => {
    try {
      await loadCalendar(Number($("#season").value));
      await predict();
    } catch (err) {
      status(err.message, true);
    }
  });
  $("#round").addEventListener("change", predict);
  $("#apikey").addEventListener("change", predict);
}

start();
