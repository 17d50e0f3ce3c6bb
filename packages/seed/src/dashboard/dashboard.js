// The peerpull cluster dashboard: polls the seed's /api/v1/cluster and renders it.
// Plain JavaScript, no dependencies, no build step. Every value from the API goes into the
// page as text (textContent), never as HTML.
'use strict';

const REFRESH_MS = 2000;
const SOURCES = ['local', 'peer', 'seed', 'upstream'];
const TOKEN_KEY = 'peerpull-admin-token';

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'title') node.title = v;
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function duration(ms) {
  if (!Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function ago(time) {
  return `${duration(Date.now() - time)} ago`;
}

function clock(time) {
  const d = new Date(time);
  return d.toLocaleTimeString([], { hour12: false });
}

function short(digest) {
  return digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '';
}

function pct(x) {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(x * 100).toFixed(x >= 0.995 || x < 0.1 ? 0 : 1)} %`;
}

function srcSpan(source) {
  return el('span', { class: `src ${SOURCES.includes(source) ? source : 'none'}` }, source || 'none');
}

function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { class: 'empty', colspan: columns }, emptyText))]));
}

let peerNames = new Map();

function peerLabel(id) {
  return peerNames.get(id) || `${id.slice(0, 8)}…${id.slice(-4)}`;
}

function renderSummary(data) {
  const nodes = data.nodes.filter((n) => !n.stale);
  const ready = nodes.filter((n) => n.ready).length;
  const served = Object.values(data.totals.servedBySource).reduce((a, b) => a + b, 0);
  const lan = served - (data.totals.servedBySource.upstream || 0);
  const stat = (value, label, cls) => el('div', { class: 'stat' }, el('b', { class: cls }, value), el('span', {}, label));
  $('summary').replaceChildren(
    stat(`${ready}/${data.nodes.length}`, 'nodes ready', ready < data.nodes.length ? 'warn' : undefined),
    stat(String(data.images.length), 'images'),
    stat(bytes(data.totals.savedBytes), 'WAN saved'),
    stat(served ? pct(lan / served) : '–', 'served without WAN'),
    stat(String(data.transfers.length), 'transfers now'),
    stat(`${data.seed.version} · up ${duration(data.seed.uptimeMs)}`, 'seed'),
  );
}

function renderNodes(data) {
  const rows = data.nodes.map((n) => {
    const state = n.stale ? 'stale' : n.ready ? 'ready' : 'unready';
    const cache = n.cache || { bytes: 0, maxBytes: 0 };
    const served = Object.values(n.served || {}).reduce((a, b) => a + b, 0);
    const meter = el('div', { class: 'meter', title: `${bytes(cache.bytes)} of ${bytes(cache.maxBytes)}` }, el('div'));
    meter.firstChild.style.width = `${Math.min(100, cache.maxBytes ? (cache.bytes / cache.maxBytes) * 100 : 0)}%`;
    const peers = (n.peers || []).map((id) => el('span', { class: 'chip', title: id }, peerLabel(id)));
    return el('tr', { 'data-node': n.name },
      el('td', {}, el('b', {}, n.name), el('div', { class: 'muted mono', title: n.id }, n.address)),
      el('td', {}, el('span', { class: `badge ${state}`, title: n.readyReason || '' }, state), n.readyReason ? el('div', { class: 'muted' }, n.readyReason.slice(0, 80)) : null),
      el('td', {}, peers.length ? peers : el('span', { class: 'muted' }, n.peerId ? 'none' : 'P2P off')),
      el('td', {}, meter, el('div', { class: 'muted' }, `${bytes(cache.bytes)} · ${cache.entries ?? 0} entries`)),
      el('td', { class: 'num' }, bytes(served)),
      el('td', { class: 'num' }, served ? pct((n.served?.local || 0) / served) : '–'),
      el('td', { class: 'num' }, String((n.transfers || []).length)),
      el('td', { class: 'num' }, ago(n.lastSeen)),
    );
  });
  $('nodes-count').textContent = `${data.nodes.length} reporting · seed ${data.seed.peerId ? `${data.seed.peers.length} P2P connections` : 'P2P off'}`;
  fill($('nodes').tBodies[0], rows, 'No node has reported yet (daemons report to the seeds given with --seed).', 8);
}

function renderSaved(data) {
  const series = data.series;
  $('saved-total').replaceChildren(bytes(data.totals.savedBytes), el('small', {}, ` saved of ${bytes(data.totals.pulledBytes)} pulled; ${bytes(data.totals.wanBytes)} over the WAN`));
  const width = 600;
  const height = 150;
  const box = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'bytes pulled and fetched over the WAN, cumulative' });
  let pulled = 0;
  let wan = 0;
  // Cumulative from zero at the start of the window (one point alone would draw no line).
  const points = [{ t: (series[0]?.t ?? Date.now()) - 10_000, pulled: 0, wan: 0 }].concat(series.map((p) => {
    pulled += p.pulled;
    wan += p.wan;
    return { t: p.t, pulled, wan };
  }));
  const max = Math.max(1, ...points.map((p) => Math.max(p.pulled, p.wan)));
  const x = (i) => (points.length < 2 ? width : (i / (points.length - 1)) * width);
  const y = (v) => height - 4 - (v / max) * (height - 12);
  box.append(svg('line', { x1: 0, y1: height - 4, x2: width, y2: height - 4, class: 'axis', stroke: '#e3e8ee' }));
  if (points.length > 1) {
    const line = (key) => points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
    const back = points.map((_, i) => points.length - 1 - i).map((i) => `L${x(i).toFixed(1)},${y(points[i].wan).toFixed(1)}`).join(' ');
    const area = `${line('pulled')} ${back} Z`;
    box.append(svg('path', { d: area, fill: '#0f766e', 'fill-opacity': 0.12, stroke: 'none' }));
    box.append(svg('path', { d: line('pulled'), fill: 'none', stroke: '#0f766e', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
    box.append(svg('path', { d: line('wan'), fill: 'none', stroke: '#d97706', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
  }
  $('saved-chart').replaceChildren(box);
}

function renderSources(data) {
  const by = data.totals.servedBySource;
  const total = Object.values(by).reduce((a, b) => a + b, 0);
  const bar = SOURCES.filter((s) => by[s]).map((s) => {
    const part = el('div', { class: `bg-${s}`, title: `${s}: ${bytes(by[s])}` });
    part.style.width = `${(by[s] / total) * 100}%`;
    return part;
  });
  $('sources-bar').replaceChildren(...bar);
  const rows = SOURCES.map((s) => el('tr', {}, el('td', {}, srcSpan(s)), el('td', { class: 'num' }, bytes(by[s] || 0)), el('td', { class: 'num' }, total ? pct((by[s] || 0) / total) : '–')));
  $('sources').tBodies[0].replaceChildren(...rows);
}

function renderImages(data) {
  const rows = data.images.map((i) =>
    el('tr', {},
      el('td', {}, el('b', {}, i.image)),
      el('td', { class: 'mono', title: i.digest }, short(i.digest)),
      el('td', { class: 'num' }, bytes(i.bytes)),
      el('td', {}, i.holders.map((h) => el('span', { class: `chip ${h.complete ? 'complete' : 'partial'}`, title: h.complete ? 'every layer held' : 'some layers held' }, h.node))),
    ),
  );
  $('images-count').textContent = `${data.images.length}`;
  fill($('images').tBodies[0], rows, 'No image cached yet.', 4);
}

function renderTransfers(data) {
  const items = data.transfers.map((t) => {
    const meter = el('div', { class: 'meter' }, el('div'));
    meter.firstChild.style.width = t.size ? `${Math.min(100, (t.written / t.size) * 100)}%` : '0%';
    return el('div', { class: 'transfer' },
      el('div', { class: 'row' }, el('span', {}, el('b', {}, t.node), ' ← ', srcSpan(t.source)), el('span', { class: 'mono', title: t.digest }, `${t.repository} ${short(t.digest)}`)),
      meter,
      el('div', { class: 'row muted' }, el('span', {}, `${bytes(t.written)}${t.size ? ` of ${bytes(t.size)}` : ''}`), el('span', {}, `for ${duration(Date.now() - t.startedAt)}`)),
    );
  });
  $('transfers').replaceChildren(...(items.length ? items : [el('div', { class: 'empty' }, 'Nothing is being fetched right now.')]));
}

function renderRateLimits(data) {
  const now = Date.now();
  const rows = data.rateLimits.map((r) =>
    el('tr', {},
      el('td', {}, r.registry),
      el('td', {}, r.node),
      el('td', { class: 'num' }, r.remaining === null ? '–' : `${r.remaining}${r.limit !== null ? ` / ${r.limit}` : ''}`),
      el('td', {}, r.backoffUntil && r.backoffUntil > now ? el('span', { class: 'bad' }, `429: holding off ${duration(r.backoffUntil - now)}`) : el('span', { class: 'muted' }, `seen ${ago(r.observedAt)}`)),
    ),
  );
  fill($('ratelimits').tBodies[0], rows, 'No registry has sent rate-limit headers.', 4);
}

function renderPulls(data) {
  const rows = data.pulls.map((p) =>
    el('tr', {},
      el('td', { class: 'num' }, clock(p.time)),
      el('td', {}, p.node),
      el('td', {}, `${p.registry}/${p.repository}`),
      el('td', { class: 'mono', title: p.digest || p.reference || '' }, `${p.kind} ${p.reference && !p.reference.startsWith('sha256:') ? p.reference : short(p.digest || p.reference)}`),
      el('td', {}, p.status < 300 ? srcSpan(p.source) : el('span', { class: 'bad' }, `HTTP ${p.status}`)),
      el('td', { class: 'num' }, bytes(p.bytes)),
      el('td', { class: 'num' }, duration(p.ms)),
    ),
  );
  $('pulls-count').textContent = `${data.totals.pullsLogged} in the log`;
  fill($('pulls').tBodies[0], rows, 'No pull recorded yet.', 7);
}

function renderProblems(data) {
  const all = [
    ...data.seed.errors.map((e) => ({ ...e, node: 'seed' })),
    ...data.nodes.filter((n) => !n.stale).flatMap((n) => (n.errors || []).map((e) => ({ ...e, node: n.name }))),
  ].sort((a, b) => b.time.localeCompare(a.time)).slice(0, 12);
  const rows = all.map((e) =>
    el('tr', {},
      el('td', { class: 'num' }, clock(Date.parse(e.time))),
      el('td', {}, e.node),
      el('td', { class: e.level === 'warn' ? 'warn' : 'bad' }, e.level),
      el('td', {}, e.msg, e.err ? el('div', { class: 'muted' }, e.err) : null),
    ),
  );
  fill($('problems').tBodies[0], rows, 'None.', 4);
}

function render(data) {
  peerNames = new Map();
  if (data.seed.peerId) peerNames.set(data.seed.peerId, 'seed');
  for (const n of data.nodes) if (n.peerId) peerNames.set(n.peerId, n.name);
  renderSummary(data);
  renderNodes(data);
  renderSaved(data);
  renderSources(data);
  renderImages(data);
  renderTransfers(data);
  renderRateLimits(data);
  renderPulls(data);
  renderProblems(data);
  $('footer').textContent = `seed ${data.seed.address} · pull log ${data.totals.pullsLogged} records · refreshes every ${REFRESH_MS / 1000} s`;
}

let timer;

async function refresh() {
  clearTimeout(timer);
  const pulse = $('pulse');
  const token = sessionStorage.getItem(TOKEN_KEY);
  try {
    const res = await fetch('/api/v1/cluster', { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
    if (res.status === 401) {
      $('login').hidden = false;
      $('main').hidden = true;
      $('banner').hidden = !token;
      $('banner').textContent = 'That token was refused.';
      pulse.className = 'pulse err';
      return; // wait for the form
    }
    if (!res.ok) throw new Error(`the seed answered HTTP ${res.status}`);
    const data = await res.json();
    $('login').hidden = true;
    $('main').hidden = false;
    $('banner').hidden = true;
    render(data);
    $('updated').textContent = `updated ${clock(data.generatedAt)}`;
    pulse.className = 'pulse on';
    setTimeout(() => (pulse.className = 'pulse'), 300);
  } catch (err) {
    $('banner').hidden = false;
    $('banner').textContent = `Cannot reach the seed: ${err.message}. Retrying…`;
    pulse.className = 'pulse err';
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value);
  $('token').value = '';
  void refresh();
});

void refresh();
