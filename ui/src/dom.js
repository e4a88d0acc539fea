// Small DOM helpers: escaping, elements, durations, sizes.

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/** An element: h("div", {class: "x", onclick: f}, child, "text", ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function age(created, now = Date.now()) {
  const s = Math.max(0, Math.round((now - Date.parse(created)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

export function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}:${v}`).join(" ");
}

/** A small SVG line chart of `points` ([[t, value]...], values in 0..max). */
export function sparkline(points, { width = 240, height = 48, max = null, title = "" } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const frame = document.createElementNS(ns, "rect");
  frame.setAttribute("width", width); frame.setAttribute("height", height); frame.setAttribute("class", "frame");
  svg.append(frame);
  if (points.length) {
    const t0 = points[0][0], t1 = points[points.length - 1][0];
    const top = max ?? Math.max(1e-9, ...points.map((p) => p[1]));
    const x = (t) => (t1 === t0 ? width - 2 : 2 + ((t - t0) / (t1 - t0)) * (width - 4));
    const y = (v) => height - 2 - (Math.min(v, top) / top) * (height - 4);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
    line.setAttribute("class", "line");
    svg.append(line);
  }
  return svg;
}

/** A bar chart of `values` (null: no data, drawn as a tick) in 0..max, oldest first. */
export function bars(values, { width = 240, height = 48, max = 1, title = "" } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [k, v] of Object.entries({ viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img", "aria-label": title })) svg.setAttribute(k, v);
  const frame = document.createElementNS(ns, "rect");
  frame.setAttribute("width", width); frame.setAttribute("height", height); frame.setAttribute("class", "frame");
  svg.append(frame);
  const slot = (width - 4) / values.length;
  values.forEach((v, i) => {
    const bar = document.createElementNS(ns, "rect");
    const tall = v === null ? 1 : Math.max(1, (Math.min(v, max) / max) * (height - 4));
    bar.setAttribute("x", (2 + i * slot + 1).toFixed(1));
    bar.setAttribute("width", Math.max(1, slot - 2).toFixed(1));
    bar.setAttribute("y", (height - 2 - tall).toFixed(1));
    bar.setAttribute("height", tall.toFixed(1));
    bar.setAttribute("class", v === null ? "empty" : "bar");
    const tip = document.createElementNS(ns, "title");
    tip.textContent = v === null ? "no creates" : `${Math.round(100 * v)} %`;
    bar.append(tip);
    svg.append(bar);
  });
  return svg;
}
