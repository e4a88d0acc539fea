// The pages: sandboxes, pools, events and one sandbox. Each view is
// mount(element, ctx) -> unmount; ctx = { feed, config, confirm, navigate }.

import { bounded, request, root } from "./api.js";
import { age, bars, bytes, esc, h, labelText, sparkline } from "./dom.js";
import { openTerminal } from "./terminal.js";

const STATES = ["", "running", "creating", "ready", "disconnected", "paused", "destroying", "failed"];
//: Stats asked for at most this many rows at once, this many requests in flight.
const STATS_ROWS = 100;
const STATS_IN_FLIGHT = 4;
const HOUR = 3600 * 1000;

function every(ms, fn) {
  let timer = null, stopped = false;
  const tick = async () => { try { await fn(); } finally { if (!stopped) timer = setTimeout(tick, ms); } };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function errorBox(e) { return h("p", { class: "error" }, e.message); }

// -- Sandboxes ---------------------------------------------------------------

export function sandboxesView(el, ctx) {
  const label = h("input", { id: "filter-label", placeholder: "label k:v", size: 14 });
  const state = h("select", { id: "filter-state" }, STATES.map((s) => h("option", { value: s }, s || "any state")));
  const text = h("input", { id: "filter-text", placeholder: "id or profile", size: 14 });
  const count = h("span", { class: "muted", id: "sandbox-count" });
  const tbody = h("tbody");
  const problem = h("div");
  el.append(
    h("div", { class: "toolbar" }, "Filter: ", label, state, text, count),
    problem,
    h("table", { class: "grid", id: "sandboxes" },
      h("thead", {}, h("tr", {}, ["id", "profile", "runtime", "state", "age", "labels", "cpu", "memory"].map((c) => h("th", {}, c)))),
      tbody),
  );
  let rows = [];
  const stats = new Map();
  let labelFilter = "";

  const visible = () => {
    const s = state.value, t = text.value.trim().toLowerCase();
    return rows.filter((r) => (!s || r.state === s) && (!t || r.id.toLowerCase().includes(t) || r.profile.toLowerCase().includes(t)));
  };
  const render = () => {
    const now = Date.now();
    const shown = visible();
    count.textContent = `${shown.length} of ${rows.length} sandboxes`;
    tbody.innerHTML = shown.map((r) => {
      const st = stats.get(r.id);
      const cpu = st ? `${st.cpu_percent.toFixed(1)} %` : "";
      const mem = st ? `${bytes(st.memory_usage_bytes)} / ${bytes(st.memory_limit_bytes)}` : "";
      return `<tr data-id="${esc(r.id)}" class="state-${esc(r.state)}"><td><a href="#/sandbox/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td>`
        + `<td>${esc(r.profile)}</td><td>${esc(r.runtime)}</td><td class="state">${esc(r.state)}</td>`
        + `<td>${esc(age(r.created, now))}</td><td class="labels">${esc(labelText(r.labels))}</td>`
        + `<td class="num">${esc(cpu)}</td><td class="num">${esc(mem)}</td></tr>`;
    }).join("");
  };
  const load = async () => {
    labelFilter = label.value.trim();
    try {
      const q = labelFilter ? `?label=${encodeURIComponent(labelFilter)}` : "";
      rows = await request("GET", `/sandboxes${q}`);
      rows.sort((a, b) => (a.created < b.created ? 1 : -1));
      problem.replaceChildren();
    } catch (e) {
      problem.replaceChildren(errorBox(e));
    }
    render();
  };
  const loadStats = async () => {
    const ids = visible().filter((r) => r.state === "running").slice(0, STATS_ROWS).map((r) => r.id);
    await bounded(ids, STATS_IN_FLIGHT, async (id) => {
      try { stats.set(id, await request("GET", `/sandboxes/${encodeURIComponent(id)}/stats`)); } catch { stats.delete(id); }
    });
    render();
  };
  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(load, 150); };
  label.addEventListener("change", load);
  state.addEventListener("change", render);
  text.addEventListener("input", render);
  const stopList = every(3000, load);
  const stopStats = every(5000, loadStats);
  const unsubscribe = ctx.feed.subscribe((e) => { if (e && e.type.startsWith("sandbox.")) soon(); });
  return () => { stopList(); stopStats(); unsubscribe(); clearTimeout(pending); };
}

// -- Pools -------------------------------------------------------------------

/** Hit rate per 5-minute slot of the last hour (12, oldest first; null: no creates), from sandbox.created events. */
export function hitRates(events, profile, now = Date.now()) {
  const slots = Array.from({ length: 12 }, () => [0, 0]);
  for (const e of events) {
    if (e.type !== "sandbox.created" || !e.data || e.data.profile !== profile) continue;
    const ago = now - Date.parse(e.timestamp);
    if (ago < 0 || ago >= HOUR) continue;
    slots[11 - Math.floor(ago / 300000)][e.data.method === "warm" ? 0 : 1] += 1;
  }
  return slots.map(([w, c]) => (w + c ? w / (w + c) : null));
}

export function poolsView(el, ctx) {
  const body = h("div", { id: "pools" });
  el.append(h("h2", {}, "Warm pools"), body);
  const load = async () => {
    let status;
    try {
      status = await request("GET", "/pools");
    } catch (e) {
      body.replaceChildren(e.code === "ADMIN_ONLY"
        ? h("p", { class: "muted" }, "Pool status is the operator's: open the dashboard through the Unix socket (sbx ui).")
        : errorBox(e));
      return;
    }
    body.replaceChildren(...Object.entries(status).map(([profile, p]) => {
      const rates = hitRates(ctx.feed.events, profile);
      const fill = p.target ? Math.min(100, Math.round((100 * p.ready) / p.target)) : 100;
      return h("section", { class: "pool", "data-profile": profile },
        h("h3", {}, profile, p.pinned ? h("span", { class: "muted" }, " (pinned)") : null),
        h("div", { class: "meter" }, h("div", { class: "fill", style: `width:${fill}%` })),
        h("p", {}, `ready ${p.ready} / target ${p.target}`, p.starting ? `, ${p.starting} starting` : "",
          ` · hits ${p.hits}, misses ${p.misses}`, p.hit_rate === null ? "" : ` (${(100 * p.hit_rate).toFixed(1)} %)`),
        h("p", { class: "muted" }, "hit rate, last hour (5-minute slots, newest right)"),
        bars(rates, { max: 1, title: `${profile} hit rate` }),
        p.last_error ? h("p", { class: "error" }, p.last_error) : null);
    }));
  };
  const stop = every(3000, load);
  const unsubscribe = ctx.feed.subscribe((e) => { if (e && (e.type === "sandbox.created" || e.type.startsWith("pool."))) load(); });
  return () => { stop(); unsubscribe(); };
}

// -- Events ------------------------------------------------------------------

export function eventsView(el, ctx) {
  const type = h("input", { id: "filter-type", placeholder: "type prefix, e.g. sandbox.", size: 22 });
  const sandbox = h("input", { id: "filter-sandbox", placeholder: "sandbox id", size: 16 });
  const status = h("span", { class: "muted", id: "stream-status" });
  const tbody = h("tbody");
  el.append(h("div", { class: "toolbar" }, "Filter: ", type, sandbox, status),
    h("table", { class: "grid", id: "events" },
      h("thead", {}, h("tr", {}, ["id", "time", "type", "sandbox", "data"].map((c) => h("th", {}, c)))), tbody));
  const render = () => {
    status.textContent = `stream: ${ctx.feed.status}`;
    const t = type.value.trim().replace(/\*$/, ""), s = sandbox.value.trim();
    const shown = ctx.feed.events.filter((e) => (!t || e.type.startsWith(t)) && (!s || e.sandbox_id === s)).slice(-500).reverse();
    tbody.innerHTML = shown.map((e) => `<tr data-type="${esc(e.type)}" data-sandbox="${esc(e.sandbox_id || "")}"><td>${e.id}</td>`
      + `<td>${esc(e.timestamp.replace("T", " ").replace(/\.\d+Z$/, "Z"))}</td><td>${esc(e.type)}</td>`
      + `<td>${e.sandbox_id ? `<a href="#/sandbox/${encodeURIComponent(e.sandbox_id)}">${esc(e.sandbox_id)}</a>` : ""}</td>`
      + `<td class="data">${esc(JSON.stringify(e.data))}</td></tr>`).join("");
  };
  type.addEventListener("input", render);
  sandbox.addEventListener("input", render);
  render();
  return ctx.feed.subscribe(render);
}

// -- One sandbox -------------------------------------------------------------

export function sandboxView(el, ctx, sandboxId) {
  const id = encodeURIComponent(sandboxId);
  const details = h("div", { id: "details" });
  const charts = h("div", { class: "charts" });
  const tunnels = h("div", { id: "tunnels" });
  const actions = h("div", { class: "actions" });
  const termBox = h("div", { id: "terminal", class: "terminal" });
  el.append(h("h2", {}, sandboxId), details, actions, h("h3", {}, "Stats"), charts, h("h3", {}, "Tunnels"), tunnels, termBox);
  const cpu = [], mem = [];
  let sandbox = null, terminal = null, gone = false;
  // Pause or Resume, by the sandbox's state (docs/lifecycle.md).
  const pause = h("button", { id: "pause", onclick: async () => {
    const paused = sandbox && sandbox.state === "paused";
    const verb = paused ? "Resume" : "Pause";
    if (!(await ctx.confirm(paused ? `Resume ${sandboxId}?`
      : `Pause ${sandboxId}? Its processes stop until it is resumed.`))) return;
    try { await request("POST", `/sandboxes/${id}/${verb.toLowerCase()}`); await load(); } catch (e) { actions.append(errorBox(e)); }
  } }, "Pause");

  const showDetails = () => {
    const s = sandbox;
    details.replaceChildren(h("dl", { class: "props" },
      ...[["state", s.state], ["profile", s.profile], ["runtime", s.runtime], ["image", s.image],
        ["age", age(s.created)], ["ttl", s.ttl ? `${s.ttl} s` : "none"], ["labels", labelText(s.labels) || "none"],
        ["memory", bytes(s.memory)], ["cpu", s.cpu]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, v)])));
    pause.textContent = s.state === "paused" ? "Resume" : "Pause";
    const list = s.tunnels || [];
    tunnels.replaceChildren(list.length
      ? h("ul", {}, list.map((t) => h("li", {}, `port ${t.port}: `, h("a", { href: t.url, target: "_blank", rel: "noopener" }, t.url),
        ` (${t.connections} connections)`)))
      : h("p", { class: "muted" }, "No dedicated host ports. The path proxy serves any port at ",
        h("code", {}, `${root}/sandboxes/${sandboxId}/ports/{port}/`), "."));
  };
  const load = async () => {
    if (gone) return;
    try {
      sandbox = await request("GET", `/sandboxes/${id}`);
      showDetails();
    } catch (e) {
      if (e.code === "SANDBOX_NOT_FOUND") {
        gone = true;
        details.replaceChildren(h("p", { class: "gone", id: "gone" }, `Sandbox ${sandboxId} is gone (or not yours to see).`));
        actions.replaceChildren();
      } else details.replaceChildren(errorBox(e));
    }
  };
  const sample = async () => {
    if (gone || !sandbox || !["running", "disconnected"].includes(sandbox.state)) return;
    try {
      const st = await request("GET", `/sandboxes/${id}/stats`);
      const t = Date.now();
      cpu.push([t, st.cpu_percent]); mem.push([t, st.memory_usage_bytes]);
      for (const series of [cpu, mem]) while (series.length && t - series[0][0] > 10 * 60 * 1000) series.shift();
      charts.replaceChildren(
        h("figure", {}, sparkline(cpu, { title: "cpu" }), h("figcaption", {}, `cpu ${st.cpu_percent.toFixed(1)} %`)),
        h("figure", {}, sparkline(mem, { max: st.memory_limit_bytes || null, title: "memory" }),
          h("figcaption", {}, `memory ${bytes(st.memory_usage_bytes)} of ${bytes(st.memory_limit_bytes)}, ${st.pids} pids`)));
    } catch { /* the next sample may work */ }
  };

  if (!ctx.config.read_only) {
    const ttl = h("input", { id: "ttl", type: "number", min: 1, placeholder: "seconds", size: 8 });
    actions.append(
      h("button", { id: "open-terminal", onclick: async (ev) => {
        ev.target.disabled = true;
        try { terminal = await openTerminal(termBox, sandboxId); } catch (e) { termBox.replaceChildren(errorBox(e)); }
      } }, "Open terminal"),
      " ", ttl,
      h("button", { id: "extend", onclick: async () => {
        const seconds = Number(ttl.value);
        if (!Number.isInteger(seconds) || seconds < 1) return;
        if (!(await ctx.confirm(`Set the ttl of ${sandboxId} to ${seconds} s from now?`))) return;
        try { await request("PATCH", `/sandboxes/${id}`, { ttl: seconds }); await load(); } catch (e) { actions.append(errorBox(e)); }
      } }, "Set ttl"),
      " ", pause, " ",
      h("button", { id: "destroy", class: "danger", onclick: async () => {
        if (!(await ctx.confirm(`Destroy ${sandboxId}? Its processes and files are lost.`))) return;
        try { await request("DELETE", `/sandboxes/${id}`); await load(); } catch (e) { actions.append(errorBox(e)); }
      } }, "Destroy"),
    );
  }
  const stopLoad = every(5000, load);
  const stopStats = every(2000, sample);
  const unsubscribe = ctx.feed.subscribe((e) => { if (e && e.sandbox_id === sandboxId) load(); });
  return () => { stopLoad(); stopStats(); unsubscribe(); if (terminal) terminal.close(); };
}
