// The status page: polls api/v1/status every second and renders it. Builds the DOM with textContent only.
"use strict";

const API = "api/v1/status";
const EVERY_MS = 1000;
const TIMEOUT_MS = 3000;
const seen = new Set();

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const pct = (f, digits = 1) => (100 * f).toFixed(digits) + "%";

function rate(x) {
  if (x >= 1e6) return (x / 1e6).toFixed(2) + "M";
  if (x >= 1e4) return (x / 1e3).toFixed(1) + "k";
  if (x >= 100) return x.toFixed(0);
  return x.toFixed(x === 0 ? 0 : 1);
}

function count(n) {
  return n.toLocaleString("en-US");
}

function ago(ms, now) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

function bar(fraction, cls) {
  const fill = el("span");
  fill.style.width = Math.min(100, Math.max(0, 100 * fraction)).toFixed(1) + "%";
  return el("span", { class: cls ? "bar " + cls : "bar" }, fill);
}

function renderRing(s) {
  $("ring-version").textContent = s.ring.version;
  $("ring-fingerprint").textContent = s.ring.fingerprint || "none (empty pool)";
  $("ring-resolver").textContent = s.ring.resolver;
  $("ring-backends").textContent = s.backends.length;
  $("ring-updated").textContent = s.ring.version ? ago(s.ring.updated_unix_ms, s.generated_unix_ms) : "never";
}

function renderSignals(s) {
  const cards = s.signals.map((g) => {
    const items = g.items.replace(/_/g, " ");
    const part = (cls, label, perS, total) =>
      el("div", { class: cls },
        el("div", { class: "value" + (cls === "refused" && perS > 0 ? " nonzero" : ""), "data-rate": perS }, rate(perS)),
        el("div", { class: "total" }, label + " " + items + "/s · " + count(total) + " in all"));
    return el("div", { class: "signal", "data-signal": g.signal },
      el("h3", {}, g.signal),
      el("div", { class: "rates" },
        part("accepted", "accepted", g.accepted_per_s, g.accepted_total),
        part("refused", "refused", g.refused_per_s, g.refused_total)));
  });
  $("signals").replaceChildren(...cards);
}

function renderBackends(s) {
  $("window-hint").textContent = "rates and p99 over the last " + s.window_s.toFixed(0) + " s";
  const rows = s.backends.map((b) => {
    const fresh = !seen.has(b.address) && seen.size > 0;
    const ejected = b.ejected_until_unix_ms ? " until " + clock(b.ejected_until_unix_ms) : "";
    const inFlight = b.in_flight_limit ? b.in_flight + " / " + b.in_flight_limit : String(b.in_flight);
    const queue = b.queue.capacity
      ? el("span", {}, bar(b.queue.size / b.queue.capacity, "queue"), b.queue.size + " / " + b.queue.capacity)
      : el("span", {}, b.queue.size + " (unbounded)");
    return el("tr", { class: fresh ? "new" : "", "data-address": b.address, "data-share": b.share },
      el("td", { class: "address" }, b.address),
      el("td", { class: "share" }, bar(b.share), el("span", { class: "share-value" }, pct(b.share))),
      el("td", { class: "num" }, b.weight),
      el("td", {}, el("span", { class: "badge " + b.health }, b.health + ejected)),
      el("td", { class: "num" }, b.ejections),
      el("td", { class: "num" }, inFlight),
      el("td", { class: "num" }, rate(b.requests_per_s)),
      el("td", { class: "num" }, b.latency_p99_ms == null ? "–" : b.latency_p99_ms.toFixed(1) + " ms"),
      el("td", { class: "queue" }, queue));
  });
  for (const b of s.backends) seen.add(b.address);
  $("backends").tBodies[0].replaceChildren(...rows);
  $("no-backends").hidden = s.backends.length > 0;
}

function renderChanges(s) {
  const rows = s.changes.map((c) => {
    const endpoints = el("td", { class: "change-endpoints" });
    for (const a of c.added) endpoints.append(el("span", { class: "added" }, "+" + a), " ");
    for (const r of c.removed) endpoints.append(el("span", { class: "removed" }, "−" + r), " ");
    const held = c.affinity_held_traces == null ? "–" : count(c.affinity_held_traces) + " traces";
    return el("tr", { "data-version": c.version },
      el("td", {}, clock(c.at_unix_ms) + " ", el("span", { class: "ago" }, ago(c.at_unix_ms, s.generated_unix_ms))),
      el("td", { class: "num" }, c.version),
      endpoints,
      el("td", { class: "num moved" }, pct(c.moved_fraction)),
      el("td", { class: "num" }, held));
  });
  $("changes").tBodies[0].replaceChildren(...rows);
  $("no-changes").hidden = s.changes.length > 0;
}

function renderAffinity(s) {
  const a = s.affinity;
  $("affinity-traces").textContent = count(a.traces);
  $("affinity-max").textContent = count(a.max_traces) + " (" + pct(a.traces / Math.max(1, a.max_traces)) + " full)";
  $("affinity-window").textContent = a.window_s + " s";
  $("affinity-rotations").textContent = count(a.early_rotations);
}

function setConnection(state, text) {
  const c = $("connection");
  c.dataset.state = state;
  c.textContent = text;
}

async function poll() {
  try {
    const reply = await fetch(API, { cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    const s = await reply.json();
    renderRing(s);
    renderSignals(s);
    renderBackends(s);
    renderChanges(s);
    renderAffinity(s);
    setConnection("live", "live · " + clock(s.generated_unix_ms));
  } catch (e) {
    setConnection("stale", "not updating: " + e.message);
  } finally {
    setTimeout(poll, EVERY_MS);
  }
}

poll();
