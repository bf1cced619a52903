// The forecast page: calls the public API (GET /events, POST /predict_full, GET /track_record)
// like any client.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { calendar: null, forecast: null, results: null, view: "forecast" };

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

async function call(method, path, body, missingOk = false) {
  const r = await fetch(path, {
    method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (missingOk && r.status === 404) return null;
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

// A past event with a forecast recorded before it shows that forecast beside the result;
// any other event is asked of the models now.
async function forecastFor(season, round, ev) {
  if (ev && ev.has_results) {
    const recorded = await call("GET", `/track_record/${season}/${round}`, undefined, true);
    if (recorded) return { forecast: recorded, recorded: true };
  }
  const forecast = await call("POST", "/predict_full", { event: { season, round }, explain: true });
  return { forecast, recorded: false };
}

async function predict() {
  if (state.view === "track") return trackRecord();
  const season = Number($("#season").value);
  const round = Number($("#round").value);
  const ev = state.calendar.events.find((e) => e.round === round);
  $("#event-title").textContent = `${season} ${ev ? ev.name : `round ${round}`}`;
  status("Predicting…");
  $("#explanation").hidden = true;
  try {
    const [answer, results] = await Promise.all([
      forecastFor(season, round, ev),
      ev && ev.has_results ? call("GET", `/events/${season}/${round}`) : Promise.resolve(null),
    ]);
    state.forecast = answer.forecast;
    state.results = results;
    render();
    if (answer.recorded) {
      const f = answer.forecast;
      const when = f.forecast_at.replace("T", " ").slice(0, 16);
      const made = f.kind === "weekend_ahead" ? "a weekend ahead" : "before qualifying";
      status(`The forecast this service gave ${made} (${when} UTC), beside the result.`);
    } else {
      const warnings = answer.forecast.metadata.warnings || [];
      const notes = warnings.length ? `Note: ${warnings.join(" | ")}. ` : "";
      status(`${notes}Click a driver to see why.`);
    }
  } catch (err) {
    $("#grid").hidden = true;
    status(err.message, true);
  }
}

const num = (x, digits) => (x == null ? "–" : x.toFixed(digits));

async function trackRecord() {
  const season = Number($("#season").value);
  $("#event-title").textContent = `${season}: the track record`;
  status("Scoring the recorded forecasts…");
  try {
    const tr = await call("GET", `/track_record?season=${season}`);
    const rows = tr.events.map((e) => el("tr", { "data-round": e.round, "data-kind": e.kind },
      el("td", { class: "num" }, e.round),
      el("td", {}, e.name),
      el("td", {}, e.kind.replace("_", " ")),
      el("td", {}, e.forecast_at.slice(0, 10)),
      el("td", { class: e.top1 ? "won" : "" }, e.favourite || "–"),
      el("td", {}, e.winner || "–"),
      el("td", { class: "num p-winner" }, pct(e.winner_probability)),
      el("td", { class: "num" }, num(e.winner_log_loss, 2)),
      el("td", { class: "num" }, e.gap_pct_mae == null ? "–" : `${e.gap_pct_mae.toFixed(3)}%`)));
    $("#track-events tbody").replaceChildren(...rows);
    const sums = Object.entries(tr.summary).filter(([, s]) => s.events > 0).map(([kind, s]) =>
      el("tr", { "data-kind": kind },
        el("td", {}, kind.replace("_", " ")),
        el("td", { class: "num" }, s.events),
        el("td", { class: "num" }, num(s.winner_log_loss, 2)),
        el("td", { class: "num" }, num(s.uniform_log_loss, 2)),
        el("td", { class: "num" }, pct(s.top1)),
        el("td", { class: "num" }, pct(s.pole_sitter_top1)),
        el("td", { class: "num" }, s.gap_pct_mae == null ? "–" : `${s.gap_pct_mae.toFixed(3)}%`),
        el("td", { class: "num" }, num(s.spearman, 2))));
    $("#track-summary tbody").replaceChildren(...sums);
    status(tr.events.length
      ? "Each event's last forecast recorded before its qualifying, scored against the result."
      : "No forecast of this season was recorded before its events (the page and the API record every answer).");
  } catch (err) {
    status(err.message, true);
  }
}

function show(view) {
  state.view = view;
  $("#view-forecast").classList.toggle("active", view === "forecast");
  $("#view-track").classList.toggle("active", view === "track");
  $("#round").disabled = view === "track";
  $("#track").hidden = view !== "track";
  $("#grid").hidden = true;
  $("#explanation").hidden = true;
  return predict();
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
  $("#view-forecast").addEventListener("click", () => show("forecast"));
  $("#view-track").addEventListener("click", () => show("track"));
}

start();
