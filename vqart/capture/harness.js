// vqart's in-page harness, injected before p5 and the sketch. It makes a sketch a pure function of
// (seed, frame number): time is virtual and only moves when a frame is stepped (or, while an async setup()
// awaits, to the next timer or animation frame it waits for), randomness is seeded, the canvas renders at
// about twice the kept size, and each frame is scaled to the capture size and turned to 8-bit gray in the page.
(() => {
  const config = window.__vqartConfig; // {seed, fps, width, height, timeoutMs, renderScale, fullDensity}
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
  // A function, not a class: Date() called without `new` must return a string, as in a browser.
  function VirtualDate(...args) {
    if (!new.target) return new RealDate(EPOCH_MS + clock).toString();
    return Reflect.construct(RealDate, args.length ? args : [EPOCH_MS + clock], new.target);
  }
  VirtualDate.prototype = RealDate.prototype;
  VirtualDate.now = () => EPOCH_MS + clock;
  VirtualDate.parse = RealDate.parse;
  VirtualDate.UTC = RealDate.UTC;
  window.Date = VirtualDate;

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

  // --- render at about renderScale x the kept size: a big canvas's pixels would mostly be thrown away ---
  // The read-back's area average of the larger render is the anti-aliasing, so WebGL's own multisampling
  // (which makes software WebGL shade every pixel several times) is turned off when the density is lowered.
  // Sketches that set pixelDensity() or antialias themselves, or count pixels (config.fullDensity:
  // pixels[], loadPixels), keep what they ask for.
  let ourCall = false;
  const ours = (fn) => { ourCall = true; try { fn(); } finally { ourCall = false; } };
  const keepDensity = (p) => {
    if (config.fullDensity || p.__vqartOwnDensity || !p.width || !p.height) return;
    const d = Math.min(1, config.renderScale * Math.max(config.width / p.width, config.height / p.height));
    const gl = p.drawingContext;
    if (d < 1 && !p.__vqartOwnAntialias && gl && gl.getContextAttributes && gl.getContextAttributes().antialias) {
      ours(() => p.setAttributes('antialias', false));
    }
    if (Math.abs(p.pixelDensity() - d) > 1e-9) ours(() => p.pixelDensity(d));
  };
  const wrapCanvasMethods = (proto) => {
    // setAttributes() re-creates a WebGL canvas at the default density, so it is re-applied after it too.
    for (const name of ['createCanvas', 'resizeCanvas', 'setAttributes']) {
      const original = proto[name];
      proto[name] = function (...args) {
        if (name === 'setAttributes' && !ourCall && (args[0] === 'antialias' || (args[0] && 'antialias' in Object(args[0])))) {
          this.__vqartOwnAntialias = true;
        }
        const result = original.apply(this, args);
        if (!ourCall) keepDensity(this);
        return result;
      };
    }
    const density = proto.pixelDensity;
    proto.pixelDensity = function (...args) {
      if (args.length && !ourCall) this.__vqartOwnDensity = true;
      return density.apply(this, args);
    };
  };

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
    wrapCanvasMethods(p5.prototype);
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
        canvasWidth: p.width, canvasHeight: p.height, density: p.pixelDensity(), webgl: Boolean(p._renderer.isP3D),
      };
    }
    if (loadedAt !== null && instances.length === 0 && realNow() - loadedAt > 1000) {
      return { error: { message: 'no p5 sketch started: define setup() and draw() (global mode) or call new p5(...) (instance mode)', line: null } };
    }
    return null;
  };

  // --- read-back: the backing store's pixels (gl.readPixels or getImageData, no copy through another canvas),
  // area-averaged down to the capture size, composited onto white (as the page shows transparent areas),
  // to luma (BT.601). A canvas smaller than the capture size is scaled up by the browser instead.
  const gray = document.createElement('canvas');
  gray.width = config.width;
  gray.height = config.height;
  const grayContext = gray.getContext('2d', { willReadFrequently: true });
  grayContext.imageSmoothingEnabled = true;
  grayContext.imageSmoothingQuality = 'high';
  let glPixels = new Uint8Array(0);

  const backing = (p, canvas) => {
    const ctx = p.drawingContext;
    const w = canvas.width, h = canvas.height;
    if (ctx && typeof ctx.readPixels === 'function') {
      if (glPixels.length !== w * h * 4) glPixels = new Uint8Array(w * h * 4);
      const bound = ctx.getParameter(ctx.FRAMEBUFFER_BINDING);
      ctx.bindFramebuffer(ctx.FRAMEBUFFER, null);
      ctx.readPixels(0, 0, w, h, ctx.RGBA, ctx.UNSIGNED_BYTE, glPixels);
      ctx.bindFramebuffer(ctx.FRAMEBUFFER, bound);
      const premultiplied = ctx.getContextAttributes().premultipliedAlpha;
      return { rgba: glPixels, w, h, flipY: true, premultiplied };
    }
    return { rgba: ctx.getImageData(0, 0, w, h).data, w, h, flipY: false, premultiplied: false };
  };

  // Output pixel i covers source [i * f, (i + 1) * f): each output pixel's first source pixel, count and
  // weights, for one axis (flat typed arrays: this runs for every pixel of every frame).
  const areaWeights = (source, target) => {
    const f = source / target, first = new Int32Array(target), count = new Int32Array(target), weights = [];
    for (let i = 0; i < target; i++) {
      const a = i * f, b = (i + 1) * f;
      first[i] = Math.floor(a);
      count[i] = Math.min(source, Math.ceil(b)) - first[i];
      for (let s = first[i]; s < first[i] + count[i]; s++) weights.push((Math.min(b, s + 1) - Math.max(a, s)) / f);
    }
    return { first, count, weights: Float32Array.from(weights) };
  };
  const weightCache = new Map();
  const weightsFor = (source, target) => {
    const key = `${source}>${target}`;
    if (!weightCache.has(key)) weightCache.set(key, areaWeights(source, target));
    return weightCache.get(key);
  };
  let luma = new Float32Array(0), rows = new Float32Array(0);

  const readGray = (p, canvas, out, offset) => {
    const W = config.width, H = config.height;
    if (canvas.width < W || canvas.height < H) {
      grayContext.fillStyle = '#fff';
      grayContext.fillRect(0, 0, W, H);
      grayContext.drawImage(canvas, 0, 0, W, H);
      const rgba = grayContext.getImageData(0, 0, W, H).data;
      for (let i = 0, j = offset; i < rgba.length; i += 4, j++) {
        out[j] = (19595 * rgba[i] + 38470 * rgba[i + 1] + 7471 * rgba[i + 2] + 32768) >>> 16;
      }
      return;
    }
    const { rgba, w, h, flipY, premultiplied } = backing(p, canvas);
    if (luma.length !== w * h) luma = new Float32Array(w * h);
    for (let i = 0, k = 0; k < luma.length; i += 4, k++) {
      const y = 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
      const a = rgba[i + 3] / 255;
      luma[k] = (premultiplied ? y : y * a) + 255 * (1 - a);
    }
    const xs = weightsFor(w, W), ys = weightsFor(h, H);
    if (rows.length !== h * W) rows = new Float32Array(h * W);
    for (let r = 0; r < h; r++) {
      for (let x = 0, k = 0; x < W; x++) {
        let v = 0;
        for (let j = 0, s = r * w + xs.first[x]; j < xs.count[x]; j++, k++, s++) v += xs.weights[k] * luma[s];
        rows[r * W + x] = v;
      }
    }
    for (let y = 0, k0 = 0; y < H; y++) {
      const n = ys.count[y];
      for (let x = 0; x < W; x++) {
        let v = 0;
        for (let j = 0; j < n; j++) {
          const s = ys.first[y] + j;
          v += ys.weights[k0 + j] * rows[(flipY ? h - 1 - s : s) * W + x];
        }
        out[offset + y * W + x] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
      }
      k0 += n;
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
  let base = null; // the virtual time setup ended at; frame k is drawn at base + k frames
  const isP5Loop = (p, fn) => fn === p._draw || fn.name === 'bound _draw';

  const step = async (p) => {
    frame += 1;
    if (base === null) base = clock;
    const now = base + frame * frameMs;
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

  // Steps `total` frames and reports them in batches of about BATCH_MS real time (packed count*height*width
  // bytes, base64), or the error. One call does the whole capture, so Python never waits on a page that may
  // hang. read=false only draws (the benchmark's ceiling).
  const BATCH_MS = 250, MAX_BATCH = 64;
  const report = (value) => window.__vqartReport(value);
  const nextTask = () => new Promise((resolve) => realSetTimeout(resolve, 0));
  const run = async (total, read) => {
    const p = sketch();
    const size = config.width * config.height;
    for (let done = 0; done < total;) {
      const out = new Uint8Array(read ? MAX_BATCH * size : 0);
      const batchStart = realNow();
      let count = 0;
      while (count < MAX_BATCH && done + count < total && (count === 0 || realNow() - batchStart < BATCH_MS)) {
        const started = realNow();
        try {
          await step(p);
        } catch (err) {
          return report({ error: { ...describe(err), frame } });
        }
        if (errors.length) return report({ error: { ...errors[0], frame } });
        const took = realNow() - started;
        if (took > config.timeoutMs) {
          return report({ error: { message: `draw() took ${(took / 1000).toFixed(1)} s, over the per-frame --timeout`, line: null, frame } });
        }
        if (read) readGray(p, canvasOf(p), out, count * size);
        count += 1;
      }
      done += count;
      report({ data: toBase64(out.subarray(0, read ? count * size : 0)), count, frame });
      await nextTask(); // let the report leave before the next batch
    }
  };
  // The real (not virtual) timeout lets the evaluate() that called start() return first.
  const start = (total, read = true) => { realSetTimeout(() => run(total, read), 0); };

  // While setup() has not finished (an async setup awaiting a timer, an animation frame or a promise), move
  // virtual time on to the next thing it waits for: a pending animation frame one frame later, else the
  // earliest timer. Only the sketch's own scheduling decides the steps, so they are the same every run.
  const pumpSetup = () => {
    const p = instances[0];
    const waiting = [...frameCallbacks].filter(([, fn]) => !(p && isP5Loop(p, fn)));
    if (waiting.length) {
      clock += frameMs;
      for (const [id, fn] of waiting) { frameCallbacks.delete(id); fn(clock); }
      return;
    }
    let due = null;
    for (const timer of timers.values()) if (due === null || timer.due < due) due = timer.due;
    if (due !== null) fireTimers(due);
  };
  const watchSetup = () => {
    const value = status();
    if (value !== null) return report(value);
    try { pumpSetup(); } catch (err) { errors.push(describe(err)); }
    realSetTimeout(watchSetup, 5);
  };
  window.addEventListener('DOMContentLoaded', watchSetup);

  window.__vqart = { hookP5, start };
})();
