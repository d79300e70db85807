// publish.js: sends this browser's camera or a screen/tab to livegen as the input.
// Owns: getUserMedia/getDisplayMedia, the choice between WHIP (WebRTC) and the WebSocket
// fallback (/ws/publish: one binary JPEG per message, drawn from a canvas at a fixed rate,
// skipped while the socket is backed up), and stopping all of it.
// Runs on the page's main thread. Events: 'state' {state, method}, 'problem' {message}.

import { WhipPublisher } from './webrtc.js';
import { RateMeter } from './stats.js';

const WS_MAX_BUFFERED = 512 * 1024; // bytes queued in the socket before we skip frames

/** Asks for the camera ('camera') or a screen/window/tab ('screen'). Plain-words errors. */
export async function openSource(kind) {
  const md = navigator.mediaDevices;
  if (!md) throw new Error('This page needs a secure connection (https or localhost) to use a camera or screen.');
  try {
    if (kind === 'screen') {
      if (!md.getDisplayMedia) throw new Error('This browser cannot share a screen.');
      return await md.getDisplayMedia({ video: { frameRate: 30 }, audio: false });
    }
    return await md.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } }, audio: false });
  } catch (e) {
    if (e && e.name === 'NotAllowedError') throw new Error(kind === 'screen' ? 'Screen sharing was not allowed.' : 'Camera access was not allowed.');
    if (e && e.name === 'NotFoundError') throw new Error('No camera was found.');
    if (e && e.name === 'NotReadableError') throw new Error('The camera is in use by another program.');
    throw e instanceof Error ? e : new Error(String(e));
  }
}

/** Sends JPEG frames of a MediaStream over /ws/publish. */
export class WsJpegPublisher extends EventTarget {
  constructor(stream, url, { fps = 15, quality = 0.8, maxWidth = 640 } = {}) {
    super();
    this.stream = stream;
    this.url = url;
    this.fps = fps;
    this.quality = quality;
    this.maxWidth = maxWidth;
    this.video = document.createElement('video');
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = document.createElement('canvas');
    this.ctx = this.canvas.getContext('2d');
    this.timer = 0;
    this.busy = false;
    this.sent = 0;
    this.skipped = 0;
    this.meter = new RateMeter(2000);
  }

  async start() {
    this.video.srcObject = this.stream;
    await this.video.play();
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => resolve();
      ws.onmessage = (ev) => {
        // The server reports rejected frames as {"type":"error","message":...} (at most 1/s).
        if (typeof ev.data !== 'string') return;
        let m = null;
        try {
          m = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (m && m.type === 'error' && typeof m.message === 'string')
          this.dispatchEvent(new CustomEvent('problem', { detail: { message: `The server rejected a frame: ${m.message}` } }));
      };
      ws.onerror = () => reject(new Error('Cannot open the publish WebSocket.'));
      ws.onclose = () => {
        if (this.ws === ws) {
          this.dispatchEvent(new CustomEvent('state', { detail: { state: 'closed' } }));
          this.stopTimer();
        }
      };
      this.ws = ws;
    });
    this.timer = setInterval(() => this.sendFrame(), 1000 / this.fps);
  }

  sendFrame() {
    const v = this.video;
    if (this.busy || !this.ws || this.ws.readyState !== WebSocket.OPEN || !v.videoWidth) return;
    if (this.ws.bufferedAmount > WS_MAX_BUFFERED) {
      this.skipped++;
      return;
    }
    const scale = Math.min(1, this.maxWidth / v.videoWidth);
    const w = Math.round(v.videoWidth * scale) & ~1;
    const h = Math.round(v.videoHeight * scale) & ~1;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.drawImage(v, 0, 0, w, h);
    this.busy = true;
    this.canvas.toBlob(
      async (blob) => {
        try {
          if (blob && this.ws && this.ws.readyState === WebSocket.OPEN) {
            this.ws.send(await blob.arrayBuffer());
            this.sent++;
            this.meter.tick(performance.now());
          }
        } finally {
          this.busy = false;
        }
      },
      'image/jpeg',
      this.quality,
    );
  }

  stopTimer() {
    clearInterval(this.timer);
    this.timer = 0;
  }

  async stats() {
    return { fps: this.meter.rate(performance.now()), frames: this.sent };
  }

  async stop() {
    this.stopTimer();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.video.srcObject = null;
  }
}

/**
 * Publishes `stream` with `method` ('whip', 'ws' or 'auto': WHIP when WebRTC exists, the
 * WebSocket when WHIP is missing or refused). Returns {publisher, method, notice}.
 */
export async function startPublishing(stream, method, { whipUrl, wsUrl }) {
  const track = stream.getVideoTracks()[0];
  if (!track) throw new Error('The chosen source has no video.');
  const canWebRtc = typeof RTCPeerConnection !== 'undefined';
  let notice = null;
  if (method === 'whip' || (method === 'auto' && canWebRtc)) {
    const p = new WhipPublisher(track, whipUrl);
    try {
      await p.start();
      return { publisher: p, method: 'whip', notice };
    } catch (e) {
      await p.stop();
      if (method === 'whip') throw e;
      notice = `WebRTC publishing failed (${e.message}); sending JPEG frames over the WebSocket instead.`;
    }
  }
  const p = new WsJpegPublisher(stream, wsUrl);
  try {
    await p.start();
  } catch (e) {
    await p.stop();
    throw e;
  }
  return { publisher: p, method: 'ws', notice };
}
