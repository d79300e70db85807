// Unit tests of web/js/ws_player.js with fakes for WebSocket, VideoDecoder and the canvas:
// what reaches the decoder (keyframes first, Annex B with the codec from the SPS), catching up
// by skipping to the next keyframe, recovery after a decoder error or a new stream config, and
// drawing decoded frames. No server, no browser.
import test from 'node:test';
import assert from 'node:assert/strict';
import { buildStreamFrame } from '../../../web/js/protocol.js';

class FakeWebSocket {
  static OPEN = 1;
  static last = null;
  constructor(url) {
    this.url = url;
    FakeWebSocket.last = this;
  }
  close() {}
  open() {
    this.onopen && this.onopen();
  }
  text(obj) {
    this.onmessage({ data: JSON.stringify(obj) });
  }
  binary(u8) {
    this.onmessage({ data: u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength) });
  }
}

const decoders = [];
class FakeVideoDecoder {
  constructor({ output, error }) {
    this.output = output;
    this.error = error;
    this.state = 'unconfigured';
    this.decodeQueueSize = 0;
    this.chunks = [];
    decoders.push(this);
  }
  configure(cfg) {
    this.cfg = cfg;
    this.state = 'configured';
  }
  decode(chunk) {
    this.chunks.push(chunk);
  }
  close() {
    this.state = 'closed';
  }
  // test side: emit a decoded frame for the oldest chunk
  emit(w = 64, h = 48) {
    const c = this.chunks.shift();
    let closed = false;
    this.output({ displayWidth: w, displayHeight: h, timestamp: c.timestamp, close: () => (closed = true) });
    return () => closed;
  }
}
class FakeChunk {
  constructor({ type, timestamp, data }) {
    this.type = type;
    this.timestamp = timestamp;
    this.byteLength = data.byteLength;
  }
}
globalThis.WebSocket = FakeWebSocket;
globalThis.VideoDecoder = FakeVideoDecoder;
globalThis.EncodedVideoChunk = FakeChunk;

const { WsPlayer } = await import('../../../web/js/ws_player.js');

const SC = [0, 0, 0, 1];
const KEY = Uint8Array.from([...SC, 0x67, 0x42, 0xc0, 0x1e, 0xda, ...SC, 0x68, 0xce, 0x0f, ...SC, 0x65, 0x88, 0x84]);
const DELTA = Uint8Array.from([...SC, 0x41, 0x9a, 0x02]);
const CONFIG = { type: 'config', codec: 'avc1.42E01E', width: 64, height: 48, fps: 16, format: 'annexb' };

function setup() {
  decoders.length = 0;
  const drawn = [];
  const canvas = { width: 0, height: 0, getContext: () => ({ drawImage: (f, x, y, w, h) => drawn.push([w, h]) }) };
  const p = new WsPlayer(canvas, 'ws://h/ws/stream?source=output');
  const problems = [];
  p.addEventListener('problem', (e) => problems.push(e.detail.message));
  p.start();
  const ws = FakeWebSocket.last;
  ws.open();
  let pts = 0;
  const send = (key, data) => ws.binary(buildStreamFrame(key, (pts += 62500), data));
  return { p, ws, canvas, drawn, problems, send };
}

test('frames before the first keyframe are dropped; then key and delta chunks reach one decoder', (t) => {
  const { p, ws, send } = setup();
  t.after(() => p.stop());
  send(false, DELTA); // before config: not this protocol yet, ignored
  ws.text(CONFIG);
  assert.equal(p.state, 'buffering');
  send(false, DELTA);
  send(false, DELTA);
  assert.equal(decoders.length, 0, 'no decoder before a keyframe');
  assert.equal(p.dropped, 2);
  send(true, KEY);
  send(false, DELTA);
  assert.equal(decoders.length, 1);
  const d = decoders[0];
  assert.equal(d.cfg.codec, 'avc1.42C01E', 'codec string from the SPS in band');
  assert.equal(d.cfg.description, undefined, 'Annex B: no avcC description');
  assert.deepEqual(d.chunks.map((c) => c.type), ['key', 'delta']);
  assert.equal(d.chunks[0].byteLength, KEY.length, 'the 9-byte header is not fed to the decoder');
});

test('decoded frames are drawn at their size and closed; the meter and counters move', (t) => {
  const { p, ws, canvas, drawn, send } = setup();
  t.after(() => p.stop());
  ws.text(CONFIG);
  send(true, KEY);
  const isClosed = decoders[0].emit(64, 48);
  assert.equal(isClosed(), true, 'VideoFrame closed after drawing');
  assert.equal(canvas.width, 64);
  assert.equal(canvas.height, 48);
  assert.deepEqual(drawn, [[64, 48]]);
  assert.equal(p.framesShown, 1);
  assert.equal(p.state, 'playing');
  assert.ok(p.decodeMs !== null && p.decodeMs >= 0);
});

test('a decoder that falls behind skips deltas until the next keyframe', (t) => {
  const { p, ws, send } = setup();
  t.after(() => p.stop());
  ws.text(CONFIG);
  send(true, KEY);
  decoders[0].decodeQueueSize = 10; // backlog
  send(false, DELTA);
  send(false, DELTA);
  assert.equal(decoders[0].chunks.length, 1, 'no delta queued behind the backlog');
  assert.equal(p.dropped, 2);
  send(true, KEY);
  // Restarted on the keyframe with a fresh decoder rather than decoding the backlog.
  assert.equal(decoders.length, 2);
  assert.equal(decoders[0].state, 'closed');
  assert.deepEqual(decoders[1].chunks.map((c) => c.type), ['key']);
});

test('after a decoder error it waits for a keyframe and starts a new decoder', (t) => {
  const { p, ws, problems, send } = setup();
  t.after(() => p.stop());
  ws.text(CONFIG);
  send(true, KEY);
  decoders[0].error(new Error('corrupt slice'));
  assert.match(problems[0], /decoder failed \(corrupt slice\); waiting for the next keyframe/);
  send(false, DELTA);
  assert.equal(decoders.length, 1, 'no decoder for a delta');
  send(true, KEY);
  assert.equal(decoders.length, 2);
  assert.deepEqual(decoders[1].chunks.map((c) => c.type), ['key']);
});

test('a new config (size change) restarts decoding at the next keyframe', (t) => {
  const { p, ws, send } = setup();
  t.after(() => p.stop());
  ws.text(CONFIG);
  send(true, KEY);
  ws.text({ ...CONFIG, width: 128, height: 96 });
  assert.equal(p.config.width, 128);
  assert.equal(decoders[0].state, 'closed');
  send(false, DELTA);
  assert.equal(decoders.length, 1);
  send(true, KEY);
  assert.equal(decoders.length, 2);
});

test('a bad config or a short frame is reported, not thrown', (t) => {
  const { p, ws, problems } = setup();
  t.after(() => p.stop());
  ws.text({ type: 'config', codec: 'vp9', width: 1, height: 1 });
  assert.match(problems[0], /unsupported codec/);
  ws.text(CONFIG);
  ws.binary(Uint8Array.from([1, 0, 0]));
  assert.match(problems[1], /too short/);
});
