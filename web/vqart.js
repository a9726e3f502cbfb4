/*
 * vqart.js: the p5.js bridge to a running `vqart serve`.
 *
 * Include it after p5 and the socket.io client:
 *   <script src="/lib/p5.min.js"></script>
 *   <script src="/lib/socket.io.min.js"></script>
 *   <script src="/vqart.js"></script>
 * then, in any sketch (global or instance mode):
 *   const model = await vqart.connect();
 *   const imgs = await model.sample({ n: 4 });                       // p5.Image[]
 *   const path = await model.interpolate('orbits:0', 'waves:12', { steps: 30 });
 *   const handle = model.stream({ mode: 'walk', fps: 30 }, img => { frame = img; });
 *   handle.stop();
 * Failed requests reject with an Error carrying the server's message (and .code).
 */
(function (root) {
  'use strict';

  const MAX_FRAMES_PER_REPLY = 512;  // the server's largest reply: interpolate with steps = 512

  /** One frame from the server ({width, height, data: raw 8-bit gray bytes}) as a p5.Image. */
  function toImage(frame) {
    const gray = new Uint8Array(frame.data);
    const img = new p5.Image(frame.width, frame.height);
    img.loadPixels();
    const px = img.pixels;
    for (let i = 0, j = 0; i < gray.length; i++, j += 4) {
      px[j] = px[j + 1] = px[j + 2] = gray[i];
      px[j + 3] = 255;
    }
    img.updatePixels();
    return img;
  }

  /** A frame to send: a "sketch:frame" string as is; a p5.Image, p5.Graphics or canvas as PNG bytes. */
  async function toWire(frame) {
    if (typeof frame === 'string') return frame;
    const canvas = frame && (frame.canvas || frame.elt || frame);
    if (!(canvas instanceof HTMLCanvasElement)) {
      throw new Error('a frame is a "sketch:frame" string, a p5.Image, a p5.Graphics or a canvas');
    }
    const blob = await new Promise(resolve => canvas.toBlob(resolve, 'image/png'));
    return blob.arrayBuffer();
  }

  function serverError(err) {
    const e = new Error(err.message);
    e.code = err.code;
    return e;
  }

  /** Options with their frame fields (a, b, image, start) converted for the wire. */
  async function wireOptions(options) {
    const payload = { ...options };
    for (const key of ['a', 'b', 'image', 'start']) {
      if (key in payload) payload[key] = await toWire(payload[key]);
    }
    return payload;
  }

  class Model {
    constructor(socket, info) {
      this.socket = socket;
      this.info = info;
      this._next = 0;
      this._pending = new Map();  // id -> {resolve, reject} for requests awaiting one reply
      this._streams = new Map();  // id -> {onFrame, onError}
      socket.on('frames', msg => this._frames(msg));
      socket.on('stopped', msg => this._settle(msg.id, msg));
      socket.on('streaming', msg => this._settle(msg.id, msg));
      socket.on('error', err => this._error(err));
      socket.on('disconnect', reason => {
        for (const p of this._pending.values()) p.reject(new Error('disconnected from vqart: ' + reason));
        this._pending.clear();
      });
    }

    /** `n` new frames. Options: n, temperature, seed, sampler ('auto' | 'prior' | 'unigram'). */
    sample(options = {}) {
      return this._ask('sample', options).then(msg => msg.frames.map(toImage));
    }

    /** `steps` frames from a to b; a and b are "sketch:frame" strings or images. Options: steps, method. */
    async interpolate(a, b, options = {}) {
      const msg = await this._ask('interpolate', await wireOptions({ ...options, a, b }));
      return msg.frames.map(toImage);
    }

    /** The model's version of an image (p5.Image, p5.Graphics or canvas). */
    async reconstruct(image) {
      const msg = await this._ask('reconstruct', await wireOptions({ image }));
      return toImage(msg.frames[0]);
    }

    /**
     * Frames pushed at `fps` until stopped: onFrame(img, seq) per frame. Options: mode ('walk' | 'sample' |
     * 'interpolate' | 'motion'), fps, temperature, seed, sampler; walk: frames, source ('dataset' | 'sample');
     * interpolate: a, b, steps, method; motion (when info.motion): start ("sketch:frame" or an image, e.g. a
     * drawing; default: one picked by the seed), like (a sketch name to steer toward).
     * Returns {id, started, stop()}.
     */
    stream(options, onFrame, onError = err => console.error('vqart stream:', err.message)) {
      const id = this._id();
      this._streams.set(id, { onFrame, onError });
      const started = wireOptions(options)
        .then(payload => this._ask('stream', payload, id))
        .catch(err => { this._streams.delete(id); onError(err); });
      const stop = () => {
        if (!this._streams.delete(id)) return Promise.resolve();
        return started.then(() => this._ask('stop', {}, id)).catch(() => {});
      };
      return { id, started, stop };
    }

    /** Close the connection. */
    close() {
      this.socket.close();
    }

    _id() {
      return 'r' + (++this._next);
    }

    _ask(event, payload, id = this._id()) {
      return new Promise((resolve, reject) => {
        this._pending.set(id, { resolve, reject });
        this.socket.emit(event, { ...payload, id });
      });
    }

    _settle(id, msg) {
      const p = this._pending.get(id);
      if (p) {
        this._pending.delete(id);
        p.resolve(msg);
      }
    }

    _frames(msg) {
      const stream = this._streams.get(msg.id);
      if (stream) {
        if (this._pending.has(msg.id)) this._settle(msg.id, msg);  // a first frame can beat `streaming`
        for (const f of msg.frames) stream.onFrame(toImage(f), msg.seq);
        return;
      }
      this._settle(msg.id, msg);
    }

    _error(err) {
      const p = this._pending.get(err.id);
      if (p) {
        this._pending.delete(err.id);
        p.reject(serverError(err));
      }
      const stream = this._streams.get(err.id);
      if (stream) {
        this._streams.delete(err.id);
        if (!p) stream.onError(serverError(err));
      }
      if (!p && !stream) console.error('vqart:', err.code, err.message);
    }
  }

  /** Connect to the vqart server (default: the page's own origin); resolves to a Model once `info` arrives. */
  function connect(url, options = {}) {
    return new Promise((resolve, reject) => {
      const socket = io(url, { transports: ['websocket'], ...options });
      // Each frame travels as its own binary attachment (up to 512 per reply); the parser's guard allows 10.
      socket.io.decoder.opts.maxAttachments = MAX_FRAMES_PER_REPLY;
      socket.once('connect_error', err => { socket.close(); reject(new Error('cannot reach vqart: ' + err.message)); });
      socket.once('info', info => resolve(new Model(socket, info)));
      socket.once('connect', () => socket.emit('info', { id: 'connect' }));
    });
  }

  root.vqart = { connect, toImage, Model };
})(typeof window !== 'undefined' ? window : this);
