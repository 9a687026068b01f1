// Agent map: mobile-money agents (cash-in/cash-out points) on a base map drawn offline on a canvas
// (Natural Earth countries from the vendored world-atlas, through the vendored topojson-client; no
// tile server, no network beyond this API). Clusters come from /agents/clusters for the visible box
// and zoom; drag to pan, wheel or +/− to zoom, click a cluster to zoom into it and an agent for its
// details. The nearby search lists agents around a point, nearest first. An agent sees itself,
// a merchant user its merchant's agents, ops every agent.

import { api } from "../api.js";
import { badge, errorBox, facts, fill, h, openDrawer, table } from "../dom.js";
import { count, money } from "../format.js";

const TILE = 256;
const MIN_ZOOM = 2;
const MAX_ZOOM = 18;
const DEFAULT_VIEW = { lat: 10.0, lon: -9.0, zoom: 5 };  // Dakar, Abidjan and Accra in one view

let basemap = null;  // promise of [rings in unit Web Mercator], loaded once per console session

function loadScript(src) {
  return new Promise((resolve, reject) => {
    if (window.topojson) { resolve(); return; }
    const s = document.createElement("script");
    s.src = src;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(s);
  });
}

// Web Mercator on a unit square: x, y in [0, 1].
function project(lon, lat) {
  const clamped = Math.max(-85.05112878, Math.min(85.05112878, lat));
  const s = Math.sin((clamped * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

function unproject(x, y) {
  const lon = x * 360 - 180;
  const n = Math.PI - 2 * Math.PI * y;
  return [lon, (180 / Math.PI) * Math.atan(0.5 * (Math.exp(n) - Math.exp(-n)))];
}

export async function loadBasemap() {
  if (!basemap) {
    basemap = (async () => {
      const [topo] = await Promise.all([
        fetch("vendor/countries-50m.json").then((r) => { if (!r.ok) throw new Error(`base map: HTTP ${r.status}`); return r.json(); }),
        loadScript("vendor/topojson-client.min.js"),
      ]);
      const features = window.topojson.feature(topo, topo.objects.countries).features;
      const countries = [];
      for (const f of features) {
        const g = f.geometry;
        if (!g) continue;
        const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
        const rings = polys.flat().map((ring) => ring.map(([lon, lat]) => project(lon, lat)));
        countries.push({ name: f.properties?.name || "", rings });
      }
      return countries;
    })();
    basemap.catch(() => { basemap = null; });
  }
  return basemap;
}

function floatsText(floats) {
  if (!floats || !floats.length) return "—";
  return floats.map((f) => money(f.amount_minor, f.currency)).join(" · ");
}

function totalsText(totals) {
  const parts = Object.entries(totals || {}).map(([ccy, minor]) => money(minor, ccy));
  return parts.length ? parts.join(" · ") : "—";
}

function showAgent(a) {
  openDrawer(a.name,
    h("div", { "data-testid": "agent-detail", "data-agent": a.id }, facts([
      ["Agent", h("span", { class: "mono" }, a.id)],
      ["Status", badge(a.status)],
      ["Operator", a.operator || "—"],
      ["Merchant", a.merchant_id || "—"],
      ["Place", `${a.city}, ${a.country}`],
      ["Location", `${a.lat.toFixed(5)}, ${a.lon.toFixed(5)}`],
      a.distance_km !== undefined ? ["Distance", `${a.distance_km.toFixed(2)} km`] : null,
      ["Float", h("span", { "data-testid": "agent-float" }, a.floats.map((f) => h("div", {},
        money(f.amount_minor, f.currency),
        f.low_threshold_minor !== null ? h("span", { class: "muted" }, ` (threshold ${money(f.low_threshold_minor, f.currency)})`) : null,
        f.low ? [" ", badge("float_low")] : null)))],
      ["Sales, 30 days", a.sales_30d.length ? a.sales_30d.map((s) => h("div", {}, `${money(s.amount_minor, s.currency)} in ${count(s.count)} transactions`)) : "None"],
    ])));
}

// The base map and the clusters on a canvas context: `view` is the centre in unit Mercator and a
// zoom, `s` the canvas's CSS size {w, h}; each cluster needs px, py (its unit-Mercator point, see
// withPoints) and gets its screen position (sx, sy) and radius (r) for hit tests. Shared with the
// Overview's map widget (pages/overview.js).
export function drawMap(ctx, view, s, countries, clusters) {
  ctx.fillStyle = "#dbe9f6";
  ctx.fillRect(0, 0, s.w, s.h);
  ctx.fillStyle = "#f4f1e8";
  ctx.strokeStyle = "#b9b4a6";
  ctx.lineWidth = 0.7;
  const k = TILE * 2 ** view.zoom;
  for (const c of countries) {
    ctx.beginPath();
    for (const ring of c.rings) {
      for (let i = 0; i < ring.length; i++) {
        const x = (ring[i][0] - view.x) * k + s.w / 2;
        const y = (ring[i][1] - view.y) * k + s.h / 2;
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      }
      ctx.closePath();
    }
    ctx.fill("evenodd");
    ctx.stroke();
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (const c of clusters) {
    const x = (c.px - view.x) * k + s.w / 2;
    const y = (c.py - view.y) * k + s.h / 2;
    c.sx = x; c.sy = y;
    if (c.agent) {
      c.r = 6;
      ctx.beginPath(); ctx.arc(x, y, c.r, 0, 2 * Math.PI);
      ctx.fillStyle = c.agent.status === "active" ? "#1f7a4d" : "#9a9a9a";
      ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.stroke();
    } else {
      c.r = Math.min(34, 10 + 5 * Math.log10(c.count) * 2);
      ctx.beginPath(); ctx.arc(x, y, c.r, 0, 2 * Math.PI);
      ctx.fillStyle = "rgba(37, 99, 235, 0.78)"; ctx.fill();
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke();
      ctx.fillStyle = "#fff"; ctx.font = "600 12px system-ui, sans-serif";
      ctx.fillText(count(c.count), x, y);
    }
  }
}

// the clusters of a GET /agents/clusters answer, each with its unit-Mercator point (px, py)
export function withPoints(clusters) {
  return clusters.map((c) => { const [px, py] = project(c.lon, c.lat); return { ...c, px, py }; });
}

// A small, still map of a GET /agents/clusters answer on `canvas` (the Overview's map widget):
// the answer's box fitted into the canvas, the base map and the clusters drawn as on this page.
export async function renderMiniMap(canvas, body) {
  const rect = canvas.getBoundingClientRect();
  const s = { w: Math.max(200, Math.round(rect.width || 320)), h: 0, dpr: window.devicePixelRatio || 1 };
  s.h = Math.max(160, Math.round(Math.min(260, s.w * 0.6)));
  canvas.width = s.w * s.dpr; canvas.height = s.h * s.dpr; canvas.style.height = `${s.h}px`;
  const [west, south, east, north] = body.bbox;
  const [x0, y1] = project(west, south);
  const [x1, y0] = project(west <= east ? east : east + 360, north);
  const pad = 36;  // a cluster's largest radius and a little: clusters on the box's edge stay whole
  const fit = Math.min(Math.log2(Math.max(40, s.w - 2 * pad) / (TILE * Math.max(x1 - x0, 1e-9))),
    Math.log2(Math.max(40, s.h - 2 * pad) / (TILE * Math.max(y1 - y0, 1e-9))));
  const view = { x: (x0 + x1) / 2, y: (y0 + y1) / 2, zoom: Math.max(0, Math.min(MAX_ZOOM, fit)) };
  const clusters = withPoints(body.clusters);
  let countries = [];
  try { countries = await loadBasemap(); } catch { /* clusters on the sea colour rather than nothing */ }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(s.dpr, 0, 0, s.dpr, 0, 0);
  drawMap(ctx, view, s, countries, clusters);
  canvas.dataset.countries = String(countries.length);
  canvas.dataset.clusters = String(clusters.length);
  canvas.dataset.total = String(body.total);
  canvas.dataset.loaded = "true";
}

export async function render({ root, me }) {
  const canvas = h("canvas", { "data-testid": "agent-map", class: "agent-map", role: "img",
    "aria-label": "Map of agents: drag to pan, scroll or use the buttons to zoom, click a cluster or an agent" });
  const status = h("p", { class: "muted", "data-testid": "map-status", "aria-live": "polite" }, "Loading the base map…");
  const clusterInfo = h("p", { class: "muted", "data-testid": "cluster-info" });
  const zoomIn = h("button", { type: "button", "data-zoom": "in", "aria-label": "Zoom in" }, "+");
  const zoomOut = h("button", { type: "button", "data-zoom": "out", "aria-label": "Zoom out" }, "−");
  const lat = h("input", { id: "ag-lat", type: "number", step: "any", min: "-90", max: "90", required: true });
  const lon = h("input", { id: "ag-lon", type: "number", step: "any", min: "-180", max: "180", required: true });
  const radius = h("input", { id: "ag-radius", type: "number", step: "any", min: "0.1", max: "500", value: "5", required: true });
  const limit = h("input", { id: "ag-limit", type: "number", min: "1", max: "500", value: "20", required: true });
  const results = h("div", { "data-testid": "nearby-results" });
  const form = h("form", { class: "filters", "data-testid": "nearby-form" },
    h("label", { for: "ag-lat" }, "Latitude", lat), h("label", { for: "ag-lon" }, "Longitude", lon),
    h("label", { for: "ag-radius" }, "Radius (km)", radius), h("label", { for: "ag-limit" }, "At most", limit),
    h("button", { type: "submit", class: "primary" }, "Find agents nearby"),
    h("button", { type: "button", "data-action": "use-centre", onclick: () => { const [x, y] = unproject(view.x, view.y); lat.value = y.toFixed(5); lon.value = x.toFixed(5); } }, "Use the map's centre"));
  root.append(h("h1", {}, "Agent map"),
    h("section", { class: "panel" }, h("div", { class: "row" }, zoomIn, zoomOut, status), canvas, clusterInfo),
    h("section", { class: "panel", "aria-labelledby": "nearby-title" }, h("h2", { id: "nearby-title" }, "Nearby search"), form, results));

  const view = { x: 0, y: 0, zoom: DEFAULT_VIEW.zoom };  // the centre in unit Mercator
  [view.x, view.y] = project(DEFAULT_VIEW.lon, DEFAULT_VIEW.lat);
  let countries = [];
  let clusters = [];
  let marks = [];  // nearby results on the map
  let fetchTimer = null;
  let seq = 0;
  let gone = false;

  function size() {
    const rect = canvas.getBoundingClientRect();
    const w = Math.max(200, Math.round(rect.width || 800));
    const hgt = Math.max(240, Math.round(Math.min(560, w * 0.6)));
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== w * dpr || canvas.height !== hgt * dpr) {
      canvas.width = w * dpr;
      canvas.height = hgt * dpr;
      canvas.style.height = `${hgt}px`;
    }
    return { w, h: hgt, dpr };
  }

  function scale() { return TILE * 2 ** view.zoom; }
  function toScreen(px, py, s) { return [(px - view.x) * scale() + s.w / 2, (py - view.y) * scale() + s.h / 2]; }
  function toUnit(sx, sy, s) { return [view.x + (sx - s.w / 2) / scale(), view.y + (sy - s.h / 2) / scale()]; }

  function bbox(s) {
    const [x0, y0] = toUnit(0, 0, s);
    const [x1, y1] = toUnit(s.w, s.h, s);
    const [west, north] = unproject(Math.max(0, x0), Math.max(0, y0));
    const [east, south] = unproject(Math.min(1, x1), Math.min(1, y1));
    return [west, south, east, north].map((v) => v.toFixed(6));
  }

  function draw() {
    const s = size();
    const ctx = canvas.getContext("2d");
    ctx.setTransform(s.dpr, 0, 0, s.dpr, 0, 0);
    drawMap(ctx, view, s, countries, clusters);
    for (const m of marks) {
      const [x, y] = toScreen(m.px, m.py, s);
      ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI);
      ctx.fillStyle = "#d97706"; ctx.fill();
    }
    canvas.dataset.countries = String(countries.length);
    const first = clusters.find((c) => c.sx >= 0 && c.sy >= 0 && c.sx <= s.w && c.sy <= s.h);
    canvas.dataset.firstCluster = first ? `${Math.round(first.sx)},${Math.round(first.sy)},${first.agent ? first.agent.id : ""}` : "";
    canvas.dataset.clusters = String(clusters.length);
    canvas.dataset.zoom = String(view.zoom);
  }

  async function loadClusters() {
    const mine = ++seq;
    const s = size();
    const box = bbox(s);
    try {
      const body = await api("/agents/clusters", { params: { bbox: box.join(","), zoom: Math.round(view.zoom) } });
      if (mine !== seq || gone) return;
      clusters = withPoints(body.clusters);
      canvas.dataset.total = String(body.total);
      canvas.dataset.loaded = "true";
      fill(status, `${count(body.total)} agents in view, in ${count(body.clusters.length)} ${body.clusters.length === 1 ? "cluster" : "clusters"} · zoom ${Math.round(view.zoom)}`);
      draw();
    } catch (err) {
      if (mine === seq && !gone) fill(status, errorBox(err));
    }
  }

  function scheduleClusters() {
    clearTimeout(fetchTimer);
    fetchTimer = setTimeout(loadClusters, 150);
  }

  function zoomAt(newZoom, sx, sy) {
    const s = size();
    const z = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, newZoom));
    const [ux, uy] = toUnit(sx ?? s.w / 2, sy ?? s.h / 2, s);
    view.zoom = z;
    const [ax, ay] = toUnit(sx ?? s.w / 2, sy ?? s.h / 2, s);
    view.x += ux - ax; view.y += uy - ay;
    draw();
    scheduleClusters();
  }

  // pan: pointer drag; a press that barely moves is a click
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x; const dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    view.x = drag.vx - dx / scale(); view.y = drag.vy - dy / scale();
    draw();
  });
  canvas.addEventListener("pointerup", async (ev) => {
    const wasDrag = drag?.moved;
    drag = null;
    if (wasDrag) { scheduleClusters(); return; }
    const rect = canvas.getBoundingClientRect();
    const sx = ev.clientX - rect.left; const sy = ev.clientY - rect.top;
    const hit = clusters.find((c) => Math.hypot(c.sx - sx, c.sy - sy) <= (c.r || 6) + 3);
    if (!hit) return;
    if (hit.agent) {
      try { showAgent(await api(`/agents/${encodeURIComponent(hit.agent.id)}`)); } catch (err) { fill(status, errorBox(err)); }
    } else {
      fill(clusterInfo, `Cluster of ${count(hit.count)} agents · float ${totalsText(hit.float_totals)}`);
      view.x = hit.px; view.y = hit.py;
      zoomAt(view.zoom + 2);
    }
  });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    zoomAt(view.zoom + (ev.deltaY < 0 ? 1 : -1), ev.clientX - rect.left, ev.clientY - rect.top);
  }, { passive: false });
  zoomIn.addEventListener("click", () => zoomAt(view.zoom + 1));
  zoomOut.addEventListener("click", () => zoomAt(view.zoom - 1));
  const onResize = () => draw();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try {
      body = await api("/agents/nearby", { params: { lat: lat.value, lon: lon.value, radius_km: radius.value, limit: limit.value } });
    } catch (err) { fill(results, errorBox(err)); return; }
    marks = body.data.map((a) => { const [px, py] = project(a.lon, a.lat); return { px, py }; });
    draw();
    fill(results, table([
      { label: "Agent", cell: (a) => h("a", { href: "#", "data-nearby": a.id, onclick: (e) => { e.preventDefault(); showAgent(a); } }, a.name) },
      { label: "Distance", num: true, cell: (a) => `${a.distance_km.toFixed(2)} km` },
      { label: "Status", cell: (a) => badge(a.status) },
      { label: "Float", num: true, cell: (a) => floatsText(a.floats) },
      { label: "Sales, 30 days", num: true, cell: (a) => floatsText(a.sales_30d) },
      { label: "Place", cell: (a) => `${a.city}, ${a.country}` },
    ], body.data, { empty: "No agent within that radius." }));
  });

  // an agent starts on itself; everyone else on West Africa
  if (me.roles.includes("agent")) {
    try {
      const mine = (await api("/agents", { params: { limit: 1 } })).data[0];
      if (mine) { [view.x, view.y] = project(mine.lon, mine.lat); view.zoom = 13; }
    } catch { /* the default view */ }
  }
  const [clon, clat] = unproject(view.x, view.y);
  lat.value = clat.toFixed(5); lon.value = clon.toFixed(5);

  try {
    countries = await loadBasemap();
    fill(status, "Loading agents…");
  } catch (err) {
    fill(status, errorBox(err));
  }
  if (!root.isConnected) return undefined;  // left while the base map loaded
  window.addEventListener("resize", onResize);
  draw();
  await loadClusters();
  return () => { gone = true; clearTimeout(fetchTimer); window.removeEventListener("resize", onResize); };
}
