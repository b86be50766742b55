// Dashboard of `market serve`: tasks, rounds, accuracy curve, contribution bars, payouts.
// Plain JS, no build step, nothing loaded from the internet; every string from the API is
// inserted as text (never as HTML).  Live: polls /api/status and redraws when the block changes.
"use strict";

const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(200, Number(params.get("poll")) || 1000);
const SVG = "http://www.w3.org/2000/svg";
const ROUND_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const state = { block: null, task: null, stale: true };

// ------------------------------------------------------------------ helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v; else if (k === "onclick") el.onclick = v; else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}
const short = (a) => (a && a.length > 14 ? a.slice(0, 6) + "…" + a.slice(-4) : a || "");
const shortCid = (c) => (c && c.length > 20 ? c.slice(0, 10) + "…" + c.slice(-6) : c || "");
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
// the unit of the task on screen: ETH, or the raw units of its ERC-20 token (never shown as ETH)
let UNIT = "ETH";
const unitOf = (token) => (!token || token.toLowerCase() === ZERO_ADDRESS ? "ETH" : "units of token " + short(token));
function eth(wei, unit = UNIT) {
  if (unit !== "ETH") return BigInt(wei || "0").toString();
  const w = BigInt(wei || "0"), one = 10n ** 18n;
  const frac = (w % one).toString().padStart(18, "0").slice(0, 4);
  return (w / one).toString() + "." + frac;
}
const badge = (status, text) => h("span", { class: "badge b-" + status }, text || status.replace("_", " "));
const shortSeed = (x) => (x && x.length > 12 ? x.slice(0, 10) + "…" : x || "");
async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || r.status + " " + r.statusText);
  return body;
}
function selectedTaskId() {
  const m = location.hash.match(/task=(\d+)/);
  return m ? Number(m[1]) : null;
}

// ------------------------------------------------------------------- charts
function accuracyChart(rounds, totalRounds) {
  const W = 520, H = 230, L = 42, R = 14, T = 14, B = 34;
  const svg = s("svg", { id: "accuracy-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "validation accuracy per round" });
  const n = Math.max(totalRounds, 1), pad = 28;
  const x = (i) => L + pad + ((i + 1) / n) * (W - L - R - 2 * pad);  // i = -1 is the starting model
  const y = (v) => T + (1 - v) * (H - T - B);
  for (let g = 0; g <= 5; g++) {
    const v = g / 5;
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, Math.round(v * 100) + "%"));
  }
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  svg.append(s("text", { x: x(-1), y: H - 12, "text-anchor": "middle" }, "start"));
  for (let i = 0; i < n; i++) svg.append(s("text", { x: x(i), y: H - 12, "text-anchor": "middle" }, "round " + i));
  const pts = rounds.filter((r) => r.accuracy !== null && r.accuracy !== undefined);
  if (!pts.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no round settled yet"));
    return svg;
  }
  const first = pts[0];
  const line = [];
  if (first.round === 0 && first.accuracy_before !== null && first.accuracy_before !== undefined) {
    svg.append(s("circle", { class: "start", cx: x(-1), cy: y(first.accuracy_before), r: 4 }));
    svg.append(s("text", { x: x(-1), y: y(first.accuracy_before) - 9, "text-anchor": "middle", class: "muted-val" }, pct(first.accuracy_before)));
    line.push(`${x(-1)},${y(first.accuracy_before)}`);
  }
  for (const r of pts) line.push(`${x(r.round)},${y(r.accuracy)}`);
  svg.append(s("polyline", { class: "curve", points: line.join(" ") }));
  for (const r of pts) {
    svg.append(s("circle", { class: "point", cx: x(r.round), cy: y(r.accuracy), r: 5, "data-round": r.round }));
    svg.append(s("text", { class: "val", x: x(r.round), y: y(r.accuracy) - 10, "text-anchor": "middle" }, pct(r.accuracy)));
  }
  return svg;
}

function contributionChart(rounds, trainers) {
  const settled = rounds.filter((r) => r.settled);
  const W = 520, H = 230, L = 48, R = 10, T = 14, B = 46;
  const svg = s("svg", { id: "contrib-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "basis points per trainer, stacked by round" });
  const total = (a) => settled.reduce((acc, r) => acc + ((r.trainers.find((t) => t.address === a) || {}).bps || 0), 0);
  const max = Math.max(10000, ...trainers.map(total));
  const step = [1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000, 100000].find((st) => st * 4 >= max) || Math.ceil(max / 4);
  const top = Math.ceil(max / step) * step;
  const y = (v) => T + (1 - v / top) * (H - T - B);
  for (let v = 0; v <= top; v += step) {
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v >= 1000 ? v / 1000 + "k" : v));
  }
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  if (!trainers.length) return svg;
  const slot = (W - L - R) / trainers.length, bw = Math.min(46, slot * 0.6);
  trainers.forEach((a, j) => {
    const cx = L + slot * (j + 0.5);
    let acc = 0, flags = 0;
    settled.forEach((r) => {
      const line = r.trainers.find((t) => t.address === a);
      if (!line) return;
      if (line.status === "outlier" || line.status === "rejected") flags++;
      const v = line.bps || 0;
      if (v > 0) {
        const rect = s("rect", { class: "bar", x: cx - bw / 2, y: y(acc + v), width: bw, height: y(acc) - y(acc + v),
          fill: ROUND_COLORS[r.round % ROUND_COLORS.length], "data-round": r.round, "data-trainer": a });
        rect.append(s("title", {}, `${a}\nround ${r.round}: ${v} bps`));
        svg.append(rect);
      }
      acc += v;
    });
    svg.append(s("text", { x: cx, y: y(acc) - 5, "text-anchor": "middle", class: "val" }, acc));
    svg.append(s("text", { x: cx, y: H - 28, "text-anchor": "middle" }, short(a)));
    if (flags) svg.append(s("text", { x: cx, y: H - 13, "text-anchor": "middle", class: "flag" }, `flagged ×${flags}`));
  });
  return svg;
}

// ------------------------------------------------------------------- panels
function cards(task) {
  const card = (k, v, id) => h("div", { class: "card", id }, h("div", { class: "k" }, k), h("div", { class: "v" }, v));
  return h("div", { class: "cards" },
    card(`reward ${UNIT}`, eth(task.reward_wei), "card-reward"),
    card(`credited ${UNIT}`, eth(task.credited_wei), "card-credited"),
    card(`withdrawn ${UNIT}`, eth(task.withdrawn_total || "0"), "card-withdrawn"),
    card(`refunded ${UNIT}`, eth(task.refunded_wei), "card-refunded"),
    card(`escrow left ${UNIT}`, eth(task.escrow_wei), "card-escrow"));
}

// one line under the title: the fixed schedule, the stake and the current round's phase
function scheduleLine(task) {
  const backup = task.backup ? ` · backup ${task.result_window} s` : "";
  const stake = BigInt(task.stake_wei || "0") > 0n ? `stake ${eth(task.stake_wei)} ${UNIT} per trainer (${eth(task.stakes_held_wei)} held)` : "no stake";
  const now = task.status === "finished" ? "finished" :
    `round ${task.current_round}: ${task.round_state} · ${task.committed_count} committed · ${task.revealed_count} revealed · ${task.round_state_text}`;
  return h("div", { class: "muted", id: "task-schedule" },
    `every ${task.period} s: commit ${task.submit_window} s · reveal ${task.reveal_window} s · result ${task.result_window} s${backup} · availability ${task.reveal_window} s · ${stake} · `,
    h("span", { id: "task-phase", "data-phase": task.round_state }, now));
}

function roundsTable(taskId, rounds) {
  const rows = rounds.map((r) => {
    const flags = [];
    for (const a of r.outliers) flags.push(h("div", {}, badge("outlier"), h("code", { title: a }, short(a))));
    for (const [a, why] of Object.entries(r.rejected))
      flags.push(h("div", {}, badge("rejected"), h("code", { title: a }, short(a)), " ", h("span", { class: "reason" }, why)));
    for (const t of r.trainers.filter((x) => x.status === "not_revealed"))
      flags.push(h("div", {}, badge("not_revealed", "no reveal"), h("code", { title: t.address }, short(t.address))));
    const kept = r.trainers.filter((t) => t.status === "kept").length;
    const receipt = r.receipt_cid
      ? h("a", { class: "cid", href: `/api/tasks/${taskId}/rounds/${r.round}/receipt`, title: r.receipt_cid, target: "_blank" }, shortCid(r.receipt_cid))
      : h("span", { class: "muted" }, "–");
    return h("tr", { "data-round": r.round, "data-status": r.status, "data-settled": r.settled, "data-phase": r.phase },
      h("td", {}, String(r.round)),
      h("td", {}, badge(r.status), r.settled ? null : h("div", { class: "phase", title: r.phase_text }, r.phase)),
      h("td", { class: "num acc" }, pct(r.accuracy)),
      h("td", { class: "num" }, `${r.committed} / ${r.revealed} / ${r.settled ? kept : "–"}`),
      h("td", {}, flags.length ? flags : h("span", { class: "muted" }, r.settled ? "none" : "–"),
        r.receipt_error ? h("div", { class: "error" }, r.receipt_error) : null),
      h("td", { class: "num" }, eth(r.credited_wei)),
      h("td", {}, r.seed ? h("code", { class: "cid", title: r.seed }, shortSeed(r.seed)) : h("span", { class: "muted" }, "–")),
      h("td", {}, r.model_cid ? h("code", { class: "cid", title: r.model_cid }, shortCid(r.model_cid)) : h("span", { class: "muted" }, "–")),
      h("td", {}, receipt));
  });
  return h("table", { id: "rounds-table" },
    h("thead", {}, h("tr", {}, ["round", "status", "val. accuracy", "committed / revealed / kept", "outliers, rejected, no reveal",
      `credited ${UNIT}`, "seed", "model CID", "receipt CID"].map((c, i) => h("th", { class: [2, 3, 5].includes(i) ? "num" : "" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "no round opened yet"))));
}

function trainersTable(rounds, payouts) {
  const rows = payouts.trainers.map((p) => {
    const chips = rounds.map((r) => {
      const t = r.trainers.find((x) => x.address === p.address);
      if (!t) return null;
      const text = `r${r.round} ${t.status === "kept" ? (t.bps ?? "") + " bps" : t.status.replaceAll("_", " ")}`;
      return h("span", { class: "badge b-" + t.status, title: t.reason || "" }, text);
    });
    return h("tr", { "data-trainer": p.address },
      h("td", {}, h("code", { title: p.address }, short(p.address))),
      h("td", {}, chips),
      h("td", { class: "num" }, eth(p.credited_wei)),
      h("td", { class: "num" }, eth(p.withdrawn_wei)),
      h("td", { class: "num owed" }, eth(p.owed_wei)),
      h("td", { class: "num stake" }, eth(p.stake_wei)),
      h("td", { class: "num stake-lost" }, eth(p.stake_lost_wei)));
  });
  return h("table", { id: "trainers-table" },
    h("thead", {}, h("tr", {}, ["trainer", "per round", `credited ${UNIT}`, `withdrawn ${UNIT}`, `owed ${UNIT}`,
      `stake held ${UNIT}`, `stake lost ${UNIT}`].map((c, i) =>
      h("th", { class: i >= 2 ? "num" : "" }, c)))),
    h("tbody", {}, rows));
}

// ------------------------------------------------------------------ drawing
async function drawTaskList(status) {
  const list = await api("/api/tasks?limit=100");
  const ul = document.getElementById("task-list");
  const sel = selectedTaskId() || (list.tasks[0] && list.tasks[0].task_id);
  ul.replaceChildren(...(list.tasks.length ? list.tasks.map((t) => h("li", {}, h("a", {
    href: "#task=" + t.task_id, class: t.task_id === sel ? "sel" : "", "data-task": t.task_id },
    "Task " + t.task_id, " ", t.name ? h("span", { class: "task-name" }, t.name + " ") : null, badge(t.status === "finished" ? "result" : "open", t.status),
    h("span", { class: "sub" }, `${t.rounds_settled}/${t.rounds} rounds · ${eth(t.reward_wei, unitOf(t.token))} ${unitOf(t.token)}`)))) : [h("li", { class: "muted" }, "no task on this contract yet")]));
  return sel;
}

async function drawTask(taskId) {
  const main = document.getElementById("task");
  if (!taskId) { main.replaceChildren(h("p", { class: "muted" }, "No task yet: create one with `market task create` or run `market simulate --rpc <the devnet's RPC URL>`.")); return; }
  const { task, rounds, payouts } = await api(`/api/tasks/${taskId}/overview`);
  UNIT = unitOf(task.token);
  task.withdrawn_total = payouts.trainers.reduce((a, p) => a + BigInt(p.withdrawn_wei), 0n).toString();
  const trainers = task.trainers;
  const settled = rounds.filter((r) => r.settled).length;
  const spec = task.spec || {};
  const specLine = spec.model ? `${spec.model.arch} on ${spec.data ? spec.data.name : "?"} · robust ${spec.robust ? spec.robust.rule : "?"} · valuation ${spec.valuation ? spec.valuation.rule : "?"}` : (task.spec_error || "");
  main.replaceChildren(
    h("h2", { class: "title", id: "task-title", "data-task": taskId }, `Task ${taskId} `,
      task.name ? h("span", { class: "task-name", id: "task-name" }, task.name + " ") : null, badge(task.status === "finished" ? "result" : "open", task.status)),
    h("div", { class: "muted" }, `${settled}/${task.rounds} rounds settled · ${trainers.length} trainers · owner `,
      h("code", { title: task.owner }, short(task.owner)), " · aggregators: a panel of ", h("span", { id: "task-panel" }, `${task.panel}${task.backup ? " + backup" : ""}`), ` drawn each round (${task.quorum} agree)`,
      " · ", specLine, " · spec ", h("code", { class: "cid", title: task.spec_cid }, shortCid(task.spec_cid))),
    scheduleLine(task),
    cards(task),
    h("div", { class: "charts" },
      h("div", { class: "panel" }, h("h3", {}, "Validation accuracy ", h("span", { class: "muted" }, "(the model each round published, from its receipt)")),
        accuracyChart(rounds, task.rounds)),
      h("div", { class: "panel" }, h("h3", {}, "Contribution per trainer ", h("span", { class: "muted" }, "(basis points, stacked across rounds)")),
        contributionChart(rounds, trainers),
        h("div", { class: "legend" }, rounds.filter((r) => r.settled).map((r) =>
          h("span", {}, h("i", { style: `background:${ROUND_COLORS[r.round % ROUND_COLORS.length]}` }), "round " + r.round))))),
    h("div", { class: "panel" }, h("h3", {}, "Rounds"), roundsTable(taskId, rounds)),
    h("div", { class: "panel" }, h("h3", {}, "Trainers and payouts"), trainersTable(rounds, payouts),
      h("div", { class: "muted" }, "every amount is this task's: credited (lost stakes of others included), withdrawn (stake " +
        "given back included), owed now (the stake too once the task has ended), the stake held and the stakes lost.")));
}

async function refresh() {
  const sel = await drawTaskList();
  await drawTask(sel);
  state.task = sel;
}

// Poll /api/status?since=<last block drawn>: redraw only when the contract emitted an event
// (every state change does) or another task was picked.
async function tick() {
  const live = document.getElementById("live");
  try {
    const since = state.block === null ? "" : `?since=${state.block}`;
    const st = await api("/api/status" + since);
    document.getElementById("chain").textContent = `chain ${st.chain_id} · contract ${short(st.contract)} · block ${st.block}`;
    const picked = selectedTaskId();
    if (state.stale || st.events_since !== 0 || (picked !== null && picked !== state.task)) {
      state.stale = false;
      await refresh();
    }
    state.block = st.block;
    document.body.dataset.block = st.block;
    live.className = "live on";
    live.textContent = "● live · " + new Date().toLocaleTimeString();
  } catch (err) {
    state.stale = true;
    live.className = "live off";
    live.textContent = "○ " + err.message;
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

window.addEventListener("hashchange", () => { state.stale = true; });
window.dashboardLoadedAt = Date.now();  // a test checks the page never reloads while it updates
tick();
