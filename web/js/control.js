// control.js: the page's control channel to livegen. Owns: the /ws/control socket
// (reconnecting), request ids and their pending promises (settled by the server's ack or
// error, or by a timeout), pushed status messages, and the HTTP fallbacks: POST
// /api/v1/params|pause|resume|reset when the socket is down, GET /api/v1/status polling when
// no status has been pushed for a while. Protocol: docs/API.md.
// Runs on the page's main thread. Events: 'state' {state}, 'status' {status}.

import { buildCommand, buildInputMessage, buildParamsMessage, describeServerError, parseControlMessage } from './protocol.js';

const REQUEST_TIMEOUT_MS = 5000;
const STATUS_STALE_MS = 2500; // poll over HTTP when no status was pushed for this long

export class ControlClient extends EventTarget {
  constructor({ wsUrl, apiBase = '/api/v1/', requestTimeoutMs = REQUEST_TIMEOUT_MS }) {
    super();
    this.wsUrl = wsUrl;
    this.apiBase = apiBase;
    this.requestTimeoutMs = requestTimeoutMs;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.lastStatusAt = 0;
    this.state = 'idle';
    this.backoffMs = 500;
    this.stopped = true;
    this.pollTimer = 0;
    this.retryTimer = 0;
    this.polling = false;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
    this.pollTimer = setInterval(() => this.pollIfStale(), 1000);
    this.pollIfStale();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error('The page stopped.'));
    }
    this.pending.clear();
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
  }

  connect() {
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.wsUrl);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.backoffMs = 500;
      this.setState('open');
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') this.onMessage(ev.data);
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      this.ws = null;
      for (const [id, p] of this.pending) {
        if (p.viaWs) {
          clearTimeout(p.timer);
          this.pending.delete(id);
          p.reject(new Error('The connection to the server closed before it answered.'));
        }
      }
      if (!this.stopped) {
        this.setState('disconnected');
        this.scheduleRetry();
      }
    };
  }

  scheduleRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
  }

  onMessage(text) {
    const m = parseControlMessage(text);
    if (m.type === 'status') {
      this.emitStatus(m);
      return;
    }
    if ((m.type === 'ack' || m.type === 'error') && m.id !== undefined && this.pending.has(m.id)) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.type === 'ack') p.resolve(m);
      else p.reject(new Error(m.message));
    }
  }

  emitStatus(status) {
    this.lastStatusAt = performance.now();
    this.dispatchEvent(new CustomEvent('status', { detail: { status } }));
  }

  async pollIfStale() {
    if (this.stopped || this.polling || performance.now() - this.lastStatusAt < STATUS_STALE_MS) return;
    this.polling = true;
    try {
      const res = await fetch(`${this.apiBase}status`, { cache: 'no-store' });
      if (res.ok) this.emitStatus(await res.json());
      else this.dispatchEvent(new CustomEvent('status-error', { detail: { message: `Status request failed (${res.status}).` } }));
    } catch {
      this.dispatchEvent(new CustomEvent('status-error', { detail: { message: 'The server is not answering.' } }));
    } finally {
      this.polling = false;
    }
  }

  /** Sends a message with a fresh id; resolves with the ack, rejects with plain words. */
  send(msg) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return null;
    const id = this.nextId++;
    const m = { ...msg, id };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('The server did not answer in time.'));
      }, this.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, viaWs: true });
      ws.send(JSON.stringify(m));
    });
  }

  /** Changes generation parameters; over HTTP when the socket is down. */
  async setParams(params) {
    const msg = buildParamsMessage(params); // throws plain words on bad values
    const viaWs = this.send(msg);
    if (viaWs) return viaWs;
    return this.post('params', msg);
  }

  async post(path, body) {
    let res;
    try {
      res = await fetch(`${this.apiBase}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch {
      throw new Error('The server is not reachable.');
    }
    let j = null;
    try {
      j = await res.json();
    } catch {
      /* no JSON body */
    }
    if (!res.ok || (j && j.type === 'error')) throw new Error(describeServerError(j && j.message) + (res.ok ? '' : ` (HTTP ${res.status})`));
    return j || { type: 'ack' };
  }

  /** pause / resume / reset; over HTTP (POST /api/v1/<type>) when the socket is down. */
  command(type) {
    const msg = buildCommand(type);
    return this.send(msg) || this.post(type, {});
  }

  setInput(input) {
    const p = this.send(buildInputMessage(input));
    return p || Promise.reject(new Error('Not connected to the server; try again in a moment.'));
  }
}
