// ws_player.js: plays one /ws/stream?source=... WebSocket onto a <canvas> with WebCodecs.
// Owns: the socket (reconnecting with backoff), a VideoDecoder fed Annex B access units with
// no `description` (SPS/PPS travel in band), the keyframe gate, and drawing decoded frames.
// A slow page never queues: when the decoder falls behind it drops to the next keyframe.
// Runs on the page's main thread. Events: 'state' {state}, 'config' {config}, 'frame',
// 'problem' {message} (plain words, for the status line).

import { parseStreamConfig, parseStreamFrame, ProtocolError } from './protocol.js';
import { KeyframeGate, codecFromSps } from './annexb.js';
import { RateMeter } from './stats.js';

const MAX_DECODE_QUEUE = 4; // frames; beyond this we are behind the stream: skip to a keyframe

export class WsPlayer extends EventTarget {
  /** canvas: HTMLCanvasElement; url: ws:// URL of /ws/stream?source=... */
  constructor(canvas, url) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.url = url;
    this.ws = null;
    this.decoder = null;
    this.config = null;
    this.codec = null;
    this.gate = new KeyframeGate();
    this.meter = new RateMeter(2000);
    this.framesShown = 0;
    this.skipped = 0; // dropped here because decoding fell behind or failed
    this.recvAt = new Map(); // ptsUs -> performance.now() at receipt, for decode latency
    this.decodeMs = null;
    this.stopped = true;
    this.backoffMs = 500;
    this.retryTimer = 0;
    this.failures = 0; // connection attempts in a row that never opened
    this.state = 'idle';
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.closeDecoder();
    this.setState('idle');
  }

  /** Frames dropped on this page (before the first keyframe, or skipped to catch up). */
  get dropped() {
    return this.gate.dropped + this.skipped;
  }

  fps(now = performance.now()) {
    return this.meter.rate(now);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
  }

  problem(message) {
    this.dispatchEvent(new CustomEvent('problem', { detail: { message } }));
  }

  connect() {
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.problem(`Cannot open the video stream: ${e.message}`);
      this.scheduleRetry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.config = null;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.backoffMs = 500;
      this.failures = 0;
      this.setState('waiting'); // for the config message
    };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onerror = () => {}; // onclose follows and carries the reconnect
    ws.onclose = () => {
      this.ws = null;
      this.closeDecoder();
      if (!opened && ++this.failures === 3)
        this.problem('Cannot open the video stream (the server may be down or have too many viewers); still trying.');
      if (!this.stopped) {
        this.setState('disconnected');
        this.scheduleRetry();
      }
    };
  }

  scheduleRetry() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
  }

  onMessage(data) {
    if (typeof data === 'string') {
      try {
        this.config = parseStreamConfig(data);
      } catch (e) {
        // A later text message that is not a config (a server notice) is not fatal.
        if (!this.config) this.problem(e instanceof ProtocolError ? e.message : String(e));
        return;
      }
      this.codec = this.config.codec;
      this.closeDecoder();
      this.gate.resync();
      this.dispatchEvent(new CustomEvent('config', { detail: { config: this.config } }));
      this.setState('buffering');
      return;
    }
    if (!this.config) return; // binary before config: not this protocol; ignore
    let f;
    try {
      f = parseStreamFrame(data);
    } catch (e) {
      this.problem(e.message);
      return;
    }
    this.decode(f);
  }

  ensureDecoder(data) {
    if (this.decoder && this.decoder.state === 'configured') return true;
    if (typeof VideoDecoder === 'undefined') {
      this.problem('This browser has no WebCodecs video decoder: choose WebRTC playback instead.');
      this.stop();
      return false;
    }
    // Prefer the profile the SPS itself declares; fall back to the config's codec string.
    const codec = codecFromSps(data) || this.codec;
    this.decoder = new VideoDecoder({
      output: (frame) => this.draw(frame),
      error: (e) => {
        this.problem(`The video decoder failed (${e.message}); waiting for the next keyframe.`);
        this.decoder = null;
        this.gate.resync();
      },
    });
    try {
      this.decoder.configure({ codec, optimizeForLatency: true, hardwareAcceleration: 'no-preference' });
    } catch (e) {
      this.problem(`This browser cannot decode ${codec}: ${e.message}`);
      this.decoder = null;
      return false;
    }
    return true;
  }

  decode(f) {
    const verdict = this.gate.admit(f.keyframe, f.data);
    if (verdict === 'drop') return;
    if (verdict === 'key' && this.decoder && this.decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      // Start over on this keyframe rather than decode the backlog.
      this.closeDecoder();
    }
    if (!this.decoder && verdict !== 'key') {
      this.gate.resync();
      this.gate.dropped++;
      return;
    }
    if (!this.ensureDecoder(f.data)) {
      this.gate.resync();
      return;
    }
    if (verdict === 'delta' && this.decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      this.skipped++;
      this.gate.resync();
      return;
    }
    if (this.recvAt.size > 64) this.recvAt.clear();
    this.recvAt.set(f.ptsUs, performance.now());
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: verdict, timestamp: f.ptsUs, data: f.data }));
    } catch (e) {
      this.problem(`The video decoder refused a frame (${e.message}).`);
      this.closeDecoder();
      this.gate.resync();
    }
  }

  draw(frame) {
    try {
      const w = frame.displayWidth;
      const h = frame.displayHeight;
      if (this.canvas.width !== w || this.canvas.height !== h) {
        this.canvas.width = w;
        this.canvas.height = h;
      }
      this.ctx.drawImage(frame, 0, 0, w, h);
      const now = performance.now();
      const t0 = this.recvAt.get(frame.timestamp);
      if (t0 !== undefined) {
        this.recvAt.delete(frame.timestamp);
        this.decodeMs = this.decodeMs === null ? now - t0 : 0.9 * this.decodeMs + 0.1 * (now - t0);
      }
      this.meter.tick(now);
      this.framesShown++;
      if (this.state !== 'playing') this.setState('playing');
      this.dispatchEvent(new Event('frame'));
    } finally {
      frame.close();
    }
  }

  closeDecoder() {
    if (this.decoder) {
      try {
        if (this.decoder.state !== 'closed') this.decoder.close();
      } catch {
        /* already closed by an error */
      }
      this.decoder = null;
    }
    this.recvAt.clear();
  }
}
