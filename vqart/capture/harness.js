// vqart's in-page harness, injected before p5 and the sketch. It makes a sketch a pure function of
// (seed, frame number): time is virtual and only moves when Python steps a frame, randomness is seeded,
// and each frame is scaled to the capture size and turned to 8-bit gray inside the page.
(() => {
  const config = window.__vqartConfig; // {seed, fps, width, height, timeoutMs}
  const realNow = performance.now.bind(performance);
  const realSetTimeout = window.setTimeout.bind(window);
  const EPOCH_MS = Date.UTC(2024, 0, 1);
  const frameMs = 1000 / config.fps;

  // --- seeded Math.random (mulberry32); p5's random() and noise() draw from it unless seeded ---
  let state = (config.seed ^ 0x9e3779b9) >>> 0;
  Math.random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  // --- virtual clock: performance.now, Date, timers and requestAnimationFrame ---
  let clock = 0;
  Object.defineProperty(performance, 'now', { value: () => clock, configurable: true });
  const RealDate = Date;
  window.Date = class Date extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(EPOCH_MS + clock);
      else super(...args);
    }
    static now() { return EPOCH_MS + clock; }
  };

  const timers = new Map();
  let nextTimerId = 1;
  const addTimer = (fn, ms, args, repeat) => {
    const delay = Math.max(0, Number(ms) || 0);
    const id = nextTimerId++;
    // An interval of 0 would fire forever within one frame; browsers clamp it too.
    timers.set(id, { due: clock + delay, fn, args, every: repeat ? Math.max(1, delay) : null });
    return id;
  };
  window.setTimeout = (fn, ms, ...args) => addTimer(fn, ms, args, false);
  window.setInterval = (fn, ms, ...args) => addTimer(fn, ms, args, true);
  window.clearTimeout = window.clearInterval = (id) => { timers.delete(id); };

  const fireTimers = (until) => {
    for (let fired = 0; ; fired++) {
      if (fired > 100000) throw new Error('timers keep firing without end (setInterval too fast?)');
      let id = null, next = null;
      for (const [key, timer] of timers) {
        if (timer.due <= until && (next === null || timer.due < next.due)) { id = key; next = timer; }
      }
      if (next === null) return;
      clock = Math.max(clock, next.due);
      if (next.every === null) timers.delete(id);
      else next.due += next.every;
      if (typeof next.fn === 'function') next.fn(...next.args);
    }
  };

  let frameCallbacks = new Map();
  let nextFrameId = 1;
  window.requestAnimationFrame = (fn) => { frameCallbacks.set(nextFrameId, fn); return nextFrameId++; };
  window.cancelAnimationFrame = (id) => { frameCallbacks.delete(id); };

  // --- errors, with the place in the sketch they come from ---
  const errors = [];
  const describe = (err, fallback = {}) => {
    const stack = (err && err.stack) || '';
    const where = /\/sketch\/[^\s:)]*:(\d+):(\d+)/.exec(stack);
    return {
      message: err && err.message ? `${err.name || 'Error'}: ${err.message}` : String(fallback.message || err),
      line: where ? Number(where[1]) : fallback.line || null,
      column: where ? Number(where[2]) : fallback.column || null,
      inSketch: Boolean(where) || Boolean(fallback.inSketch),
    };
  };
  window.addEventListener('error', (event) => {
    const inSketch = /\/sketch\//.test(event.filename || '');
    errors.push(describe(event.error, {
      message: event.message, line: inSketch ? event.lineno : null,
      column: inSketch ? event.colno : null, inSketch,
    }));
  });
  window.addEventListener('unhandledrejection', (event) => errors.push(describe(event.reason)));

  // --- p5 instances: found through p5's own hooks, for global and instance mode alike ---
  const instances = [];
  let loadedAt = null;
  window.addEventListener('load', () => { loadedAt = realNow(); });

  const hookP5 = (p5) => {
    // p5 1.x calls its hooks with `this` = window in global mode; the instance is then p5.instance.
    const remember = function () {
      const p = this === window ? p5.instance : this;
      if (!instances.includes(p)) instances.push(p);
    };
    if (typeof p5.registerAddon === 'function') {
      p5.registerAddon((_p5, _fn, lifecycles) => { lifecycles.presetup = remember; });
    } else {
      p5.prototype.registerMethod('init', remember);
    }
  };

  const sketch = () => instances.find((p) => p._setupDone) || null;
  const canvasOf = (p) => p._renderer.elt || p._renderer.canvas;

  // The state Python polls until setup is over: an error, the sketch's facts, or null (still loading).
  const status = () => {
    if (errors.length) return { error: errors[0] };
    const p = sketch();
    if (p) {
      const canvas = canvasOf(p);
      return {
        ready: true, version: window.p5.VERSION, mode: p._isGlobal ? 'global' : 'instance',
        canvasWidth: canvas.width, canvasHeight: canvas.height, webgl: Boolean(p._renderer.isP3D),
      };
    }
    if (loadedAt !== null && instances.length === 0 && realNow() - loadedAt > 1000) {
      return { error: { message: 'no p5 sketch started: define setup() and draw() (global mode) or call new p5(...) (instance mode)', line: null } };
    }
    return null;
  };

  // --- read-back: scale the sketch's canvas to the capture size, then luma (BT.601) into a byte buffer ---
  const gray = document.createElement('canvas');
  gray.width = config.width;
  gray.height = config.height;
  const grayContext = gray.getContext('2d', { willReadFrequently: true });
  grayContext.imageSmoothingEnabled = true;
  grayContext.imageSmoothingQuality = 'high';

  const readGray = (source, out, offset) => {
    // Transparent canvas areas look white on the page, so composite onto white as a viewer sees it.
    grayContext.fillStyle = '#fff';
    grayContext.fillRect(0, 0, config.width, config.height);
    grayContext.drawImage(source, 0, 0, config.width, config.height);
    const rgba = grayContext.getImageData(0, 0, config.width, config.height).data;
    for (let i = 0, j = offset; i < rgba.length; i += 4, j++) {
      out[j] = (19595 * rgba[i] + 38470 * rgba[i + 1] + 7471 * rgba[i + 2] + 32768) >>> 16;
    }
  };

  const toBase64 = (bytes) => {
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  };

  // --- frame stepping: p5's own rAF loop is never run; each step sets what p5 reads, then redraws ---
  let frame = 0;
  const isP5Loop = (p, fn) => fn === p._draw || fn.name === 'bound _draw';

  const step = async (p) => {
    frame += 1;
    const now = frame * frameMs;
    fireTimers(now);
    clock = now;
    const callbacks = frameCallbacks;
    frameCallbacks = new Map();
    for (const fn of callbacks.values()) if (!isP5Loop(p, fn)) fn(now);
    if (typeof p._setProperty === 'function') p._setProperty('deltaTime', frameMs);
    else p.deltaTime = frameMs;
    p._frameRate = config.fps;
    p._lastTargetFrameTime = now;
    p._lastRealFrameTime = now;
    if (p._loop) await p.redraw();
  };

  // Steps `count` frames and returns them packed (count*height*width bytes) as base64, or the error.
  // read=false only draws (the benchmark's ceiling).
  const run = async (count, read) => {
    const p = sketch();
    const size = config.width * config.height;
    const out = new Uint8Array(read ? count * size : 0);
    for (let i = 0; i < count; i++) {
      const started = realNow();
      try {
        await step(p);
      } catch (err) {
        return { error: { ...describe(err), frame } };
      }
      if (errors.length) return { error: { ...errors[0], frame } };
      const took = realNow() - started;
      if (took > config.timeoutMs) {
        return { error: { message: `draw() took ${(took / 1000).toFixed(1)} s, over the per-frame --timeout`, line: null, frame } };
      }
      if (read) readGray(canvasOf(p), out, i * size);
    }
    return { data: toBase64(out), frame };
  };

  // Results go to Python through an exposed function, so Python never blocks on a page that may hang.
  const report = (value) => window.__vqartReport(value);
  // Batches run strictly one after another, even if a draw() awaits something real.
  let queue = Promise.resolve();
  const nextTask = () => new Promise((resolve) => realSetTimeout(resolve, 0));
  const start = (count, read = true) => {
    // The real (not virtual) timeout lets the evaluate() that called start() return first.
    queue = queue.then(nextTask).then(() => run(count, read)).then(report);
  };
  const watchSetup = () => {
    const value = status();
    if (value === null) realSetTimeout(watchSetup, 5);
    else report(value);
  };
  window.addEventListener('DOMContentLoaded', watchSetup);

  window.__vqart = { hookP5, start };
})();
