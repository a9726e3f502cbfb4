// The training view: curves (uPlot), the codebook, reconstructions and controls, live while a training runs
// (`vqart train --live`), or a finished run read from its files (`vqart serve RUN`, at /train).
const MAX_POINTS = 10000; // per series, as on the server: an hour of training stays a bounded picture
const COLORS = ['#ffb454', '#5ec4ff', '#9ad07a', '#ff6b9d', '#c89bff', '#f2e86d', '#6ef2d2', '#ff8a5c'];
const MARKS = { kmeans_init: '#9ad07a', recovery: '#5ec4ff55', control: '#ffb454', nan_restore: '#ff6b6b' };

const state = { info: {}, points: [], rows: [], events: [], heavy: null, status: 'loading', live: false };
const charts = {};
let socket, drawQueued = false, redrawMs = [];

// ---- data ----------------------------------------------------------------------------------------------
function keep(list, more) {
  for (const item of more) list.push(item);
  if (list.length > MAX_POINTS) list.splice(0, list.length - MAX_POINTS);
}

function smooth(values, a) {
  if (!a) return values;
  let s = null;
  return values.map(v => (v == null ? null : (s = s == null ? v : a * s + (1 - a) * v)));
}

// A finished run read from its files has epoch rows only: their training figures stand in for the points.
const asPoint = r => ({ step: r.step, loss: r.train_loss, recon: r.train_recon, reg: r.train_commit ?? r.train_kl,
                        lr: r.lr, beta: r.beta, perplexity: r.perplexity, active: r.active_codes });

// Every series against one x (step): scalar points and epoch rows merged in step order (both arrive sorted),
// gaps as null (uPlot's aligned data); built once per redraw for all three charts.
function columns() {
  const points = state.points.length ? state.points : state.rows.map(asPoint);
  const rows = state.rows, xs = [], atPoint = [], atRow = [];
  for (let i = 0, j = 0; i < points.length || j < rows.length;) {
    const step = Math.min(i < points.length ? points[i].step : Infinity, j < rows.length ? rows[j].step : Infinity);
    xs.push(step);
    atPoint.push(i < points.length && points[i].step === step ? points[i++] : null);
    atRow.push(j < rows.length && rows[j].step === step ? rows[j++] : null);
  }
  const a = state.points.length ? state.smoothing : 0;
  const pick = (items, key) => items.map(item => (item && item[key] != null ? item[key] : null));
  return { xs, point: key => smooth(pick(atPoint, key), a), row: key => pick(atRow, key) };
}

// ---- charts --------------------------------------------------------------------------------------------
function markers(u) {
  const ctx = u.ctx, { top, height } = u.bbox;
  for (const e of state.events) {
    const x = u.valToPos(e.step, 'x', true);
    if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) continue;
    ctx.strokeStyle = MARKS[e.event] || '#888';
    ctx.lineWidth = e.event === 'recovery' ? 1 : 2;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
  }
}

function chart(id, title, series, scales, log) {
  const el = document.getElementById(id);
  const opts = {
    title, width: el.clientWidth || 700, height: 180,
    scales: { x: { time: false }, ...scales },
    series: [{ label: 'step' }, ...series.map((s, i) => ({ spanGaps: true, width: 1.5, stroke: COLORS[i % COLORS.length], ...s }))],
    axes: [{ stroke: '#8b8a93', grid: { stroke: '#2a2a33' } },
           ...Object.keys(scales).map((scale, i) => ({ scale, side: i ? 1 : 3, stroke: '#8b8a93', grid: { show: i === 0, stroke: '#2a2a33' } }))],
    hooks: { draw: [markers] },
  };
  if (log) opts.scales[Object.keys(scales)[0]].distr = 3;
  return new uPlot(opts, [[]].concat(series.map(() => [])), el);
}

function buildCharts() {
  const q = state.info.quantized;
  for (const c of Object.values(charts)) c.destroy();
  const log = document.getElementById('log-scale').checked;
  charts.loss = chart('chart-loss', 'loss', [
    { label: 'train loss', scale: 'loss' }, { label: 'reconstruction', scale: 'loss' },
    { label: q ? 'commitment' : 'KL', scale: 'loss' }, { label: 'select loss (epoch)', scale: 'loss', points: { show: true } },
  ], { loss: {} }, log);
  charts.codes = chart('chart-codes', q ? 'codebook and quality' : 'quality', [
    ...(q ? [{ label: 'perplexity (batch, level 1)', scale: 'codes' }, { label: 'active codes (batch)', scale: 'codes' }] : []),
    { label: 'select PSNR', scale: 'dB', points: { show: true } },
    ...(q ? [{ label: 'dead codes (epoch, all levels)', scale: 'codes', points: { show: true } }] : []),
  ], q ? { codes: {}, dB: {} } : { dB: {} }, false);
  charts.schedule = chart('chart-schedule', 'schedule', [
    { label: 'learning rate', scale: 'lr' }, ...(q ? [{ label: 'beta', scale: 'beta' }] : []),
  ], q ? { lr: {}, beta: {} } : { lr: {} }, false);
}

function redraw() {
  drawQueued = false;
  const started = performance.now();
  const q = state.info.quantized, c = columns();
  charts.loss.setData([c.xs, c.point('loss'), c.point('recon'), c.point('reg'), c.row('val_loss')]);
  charts.codes.setData(q ? [c.xs, c.point('perplexity'), c.point('active'), c.row('val_psnr'), c.row('dead_codes')]
    : [c.xs, c.row('val_psnr')]);
  charts.schedule.setData(q ? [c.xs, c.point('lr'), c.point('beta')] : [c.xs, c.point('lr')]);
  redrawMs.push(performance.now() - started);
  if (redrawMs.length > 100) redrawMs.shift();
  document.getElementById('points').textContent = `${state.points.length} points · ${state.rows.length} epochs`;
}

function queueRedraw() {
  if (!drawQueued) { drawQueued = true; requestAnimationFrame(redraw); }
}

// ---- codebook and pictures -----------------------------------------------------------------------------
function drawCodebook() {
  const heavy = state.heavy;
  if (!heavy || !heavy.levels.length) return;
  const level = heavy.levels[Number(document.getElementById('level').value || 0)] || heavy.levels[0];
  const usage = document.getElementById('usage'), u = usage.getContext('2d');
  u.fillStyle = '#000'; u.fillRect(0, 0, usage.width, usage.height);
  const most = Math.max(1, ...level.usage), w = usage.width / level.usage.length;
  level.usage.forEach((n, i) => {
    const h = level.dead[i] ? usage.height : (n / most) * (usage.height - 4);
    u.fillStyle = level.dead[i] ? '#ff6b6b66' : '#ffb454';
    u.fillRect(i * w, usage.height - h, Math.max(1, w - 0.5), h);
  });
  const pca = document.getElementById('pca'), p = pca.getContext('2d');
  p.fillStyle = '#000'; p.fillRect(0, 0, pca.width, pca.height);
  const all = level.codes.concat(level.latents || []);
  const xs = all.map(v => v[0]), ys = all.map(v => v[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const at = ([x, y]) => [10 + (x - x0) / (x1 - x0 || 1) * (pca.width - 20), 10 + (y - y0) / (y1 - y0 || 1) * (pca.height - 20)];
  (level.latents || []).forEach((v, i) => {
    const [x, y] = at(v);
    p.fillStyle = COLORS[level.labels[i] % COLORS.length] + '88';
    p.fillRect(x - 1, y - 1, 2, 2);
  });
  level.codes.forEach((v, i) => {
    const [x, y] = at(v);
    p.strokeStyle = level.dead[i] ? '#ff6b6b' : '#ffffff';
    p.beginPath(); p.arc(x, y, 3, 0, 2 * Math.PI); p.stroke();
  });
  const legend = document.getElementById('legend');
  legend.textContent = level.latents ? 'codes: white circles (red: unused this epoch) · encoder outputs by sketch: '
    : 'codes of this level (red: unused this epoch); encoder outputs are shown on level 1';
  if (level.latents) (state.info.sketches || []).forEach((name, i) => {
    const span = document.createElement('span');
    span.textContent = `■ ${name} `;
    span.style.color = COLORS[i % COLORS.length];
    legend.append(span);
  });
}

function showHeavy(heavy) {
  if (!heavy) return;
  if (!state.heavy || state.heavy.epoch !== heavy.epoch) showProgression(heavy.epoch);
  state.heavy = heavy;
  document.getElementById('recons').src = heavy.reconstructions;
  if (heavy.code_map) document.getElementById('codemap').src = heavy.code_map;
  drawCodebook();
}

function showProgression(epoch) {  // the run folder redraws it at the epochs it keeps
  const img = document.getElementById('progression');
  img.onerror = () => img.classList.add('hidden');
  img.onload = () => img.classList.remove('hidden');
  img.src = `/api/train/picture/progression.png?epoch=${epoch}`;
}

function addEvents(events) {
  const log = document.getElementById('log');
  keep(state.events, events);
  for (const e of events) {
    if (e.event === 'recovery') continue;  // many, early: shown as thin markers only
    const line = document.createElement('div');
    line.textContent = e.event === 'control' ? `step ${e.step}: ${e.name} ${e.old} → ${e.new}` : `step ${e.step}: ${e.event.replace('_', ' ')}`;
    log.prepend(line);
  }
}

function setStatus(status) {
  state.status = status;
  const el = document.getElementById('status');
  el.textContent = status;
  el.className = status;
  document.querySelectorAll('.live-only').forEach(x => x.classList.toggle('hidden', !state.live || ['finished', 'stopped', 'interrupted'].includes(status)));
}

function note(text, error = false) {
  const line = document.createElement('div');
  line.textContent = text;
  if (error) line.className = 'error';
  document.getElementById('log').prepend(line);
}

// ---- wiring --------------------------------------------------------------------------------------------
function showInfo(info) {  // from the history, or from an update when the page opened before training started
  state.info = info;
  document.getElementById('meta').textContent = info.run === undefined ? 'waiting for the training to start'
    : `${info.run} · ${{ fsq: `${info.levels} FSQ group(s) of ${info.codebook_size} codes`,
                          vq: `${info.levels} level(s) of ${info.codebook_size} codes` }[info.quantizer] || 'VAE (a Gaussian latent)'}`;
  document.querySelectorAll('.vq-only').forEach(x => x.classList.toggle('hidden', !info.quantized));
  // A commitment weight and dead codes exist only for learned codebooks, not for FSQ's implicit one.
  document.querySelectorAll('.codebook-only').forEach(x => x.classList.toggle('hidden', info.quantizer !== 'vq'));
  const level = document.getElementById('level');
  level.replaceChildren(...Array.from({ length: info.levels || 0 }, (_, i) => new Option(`level ${i + 1}`, i)));
}

async function start() {
  const history = await (await fetch('/api/train/history')).json();
  state.live = history.live;
  state.smoothing = Number(document.getElementById('smoothing').value);
  showInfo(history.info);
  document.getElementById('level').addEventListener('change', drawCodebook);
  keep(state.points, history.points);
  keep(state.rows, history.rows);
  addEvents(history.events);
  buildCharts();
  showHeavy(history.heavy);
  if (!history.heavy && history.rows.length) showProgression(0);
  setStatus(history.status);
  redraw();
  document.getElementById('log-scale').addEventListener('change', () => { buildCharts(); redraw(); });
  document.getElementById('smoothing').addEventListener('input', e => { state.smoothing = Number(e.target.value); queueRedraw(); });
  window.addEventListener('resize', () => { buildCharts(); redraw(); });
  if (history.live) follow(history.n);
}

function follow(n) {
  socket = io({ transports: ['websocket'] });
  state.n = n;
  // On every (re)connect say what the page holds, so it gets what it missed and nothing twice.
  socket.on('connect', () => socket.emit('follow', { n: state.n, rows: state.rows.length }));
  socket.on('update', (update, ack) => {
    state.n = update.n;
    if (update.info) { showInfo(update.info); buildCharts(); }
    keep(state.points, update.points);
    keep(state.rows, update.rows);
    addEvents(update.events);
    if (update.heavy) showHeavy(update.heavy);
    setStatus(update.status);
    const oldest = update.points[0];
    if (oldest) record('scalars', Date.now() / 1000 - oldest.time);  // how late a step's scalars arrive, at worst
    queueRedraw();
    if (ack) ack();
  });
  socket.on('control_applied', c => {
    note(`applied at step ${c.step}: ${c.name} ${c.old} → ${c.new}`);
    window.__vqartApplied = c;
    record('controls', Date.now() / 1000 - c.time);  // from the trainer applying it to this page showing it
  });
  socket.on('error', e => note(`${e.code}: ${e.message}`, true));
  let next = 0;
  const send = (name, value) => socket.emit('control', { id: `c${++next}`, name, value });
  document.querySelectorAll('[data-control]').forEach(b => b.addEventListener('click', () => send(b.dataset.control)));
  document.querySelectorAll('[data-apply]').forEach(b => b.addEventListener('click', () => send(b.dataset.apply, Number(document.getElementById(b.dataset.apply).value))));
}

const latencies = { scalars: [], controls: [] };  // seconds, the last 1000 of each (for the benchmark)
function record(kind, seconds) {
  latencies[kind].push(seconds);
  if (latencies[kind].length > 1000) latencies[kind].shift();
}
window.__vqartLatencies = () => latencies;
window.__vqartRedrawMs = () => redrawMs.slice();
window.__vqartFeed = (count) => {  // for the benchmark: an hour's worth of points, then time the redraws
  const last = state.points[state.points.length - 1] || { step: 0, loss: 1, recon: 1, reg: 0.1, lr: 1e-3, beta: 0.2, perplexity: 90, active: 120 };
  const more = [];
  for (let i = 1; i <= count; i++) more.push({ ...last, step: last.step + i, loss: last.loss * (1 + 0.1 * Math.sin(i)) });
  keep(state.points, more);
  redrawMs = [];
  for (let i = 0; i < 20; i++) redraw();
  return { points: state.points.length, ms: redrawMs.slice() };
};
start().catch(err => note(String(err), true));
