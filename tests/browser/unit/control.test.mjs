// Unit tests of web/js/control.js with a fake WebSocket and a fake fetch: request ids and
// acks, errors in plain words, timeouts, pushed status, and the HTTP fallbacks of docs/API.md
// when the socket is down. No server, no browser.
import test from 'node:test';
import assert from 'node:assert/strict';

class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    FakeWebSocket.all.push(this);
  }
  send(s) {
    this.sent.push(JSON.parse(s));
  }
  close() {
    this.readyState = FakeWebSocket.CLOSED;
  }
  // test side
  open() {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen && this.onopen();
  }
  reply(obj) {
    this.onmessage && this.onmessage({ data: JSON.stringify(obj) });
  }
  drop() {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose && this.onclose();
  }
}
globalThis.WebSocket = FakeWebSocket;

const fetches = [];
let fetchReply = () => ({ status: 200, body: { type: 'ack', id: null } });
globalThis.fetch = async (url, init = {}) => {
  fetches.push({ url, method: init.method || 'GET', body: init.body ? JSON.parse(init.body) : undefined });
  const r = fetchReply(url, init);
  return { ok: r.status >= 200 && r.status < 300, status: r.status, json: async () => r.body };
};

const { ControlClient } = await import('../../../web/js/control.js');

function client(opts = {}) {
  FakeWebSocket.all.length = 0;
  fetches.length = 0;
  const c = new ControlClient({ wsUrl: 'ws://h/ws/control', apiBase: '/api/v1/', ...opts });
  c.start();
  const ws = FakeWebSocket.all[0];
  return { c, ws };
}

test('params go over the socket with an id; the matching ack resolves', async (t) => {
  const { c, ws } = client();
  t.after(() => c.stop());
  ws.open();
  assert.equal(c.state, 'open');
  const p = c.setParams({ prompt: ' a cat ', blend: 2 });
  assert.equal(ws.sent.length, 1);
  const m = ws.sent[0];
  assert.deepEqual({ ...m, id: undefined }, { type: 'params', prompt: 'a cat', blend: 2, id: undefined });
  ws.reply({ type: 'ack', id: m.id + 100 }); // someone else's answer: ignored
  ws.reply({ type: 'status', state: 'running' });
  ws.reply({ type: 'ack', id: m.id, params: { prompt: 'a cat', blend: 2 } });
  const ack = await p;
  assert.equal(ack.params.prompt, 'a cat');
});

test('an error reply rejects with the server reason in plain words', async (t) => {
  const { c, ws } = client();
  t.after(() => c.stop());
  ws.open();
  const p = c.setParams({ strength: 0.9 });
  ws.reply({ type: 'error', id: ws.sent[0].id, message: 'strength must be a number between 0 and 1' });
  await assert.rejects(p, { message: 'Strength must be a number between 0 and 1.' });
});

test('bad values are refused before anything is sent', async (t) => {
  const { c, ws } = client();
  t.after(() => c.stop());
  ws.open();
  await assert.rejects(c.setParams({ steps: 9 }), /Denoising steps/);
  assert.equal(ws.sent.length, 0);
  assert.equal(fetches.filter((f) => f.method === 'POST').length, 0);
});

test('no answer in time rejects; a closed socket rejects what was pending', async (t) => {
  const { c, ws } = client({ requestTimeoutMs: 50 });
  t.after(() => c.stop());
  ws.open();
  await assert.rejects(c.command('reset'), /did not answer in time/);
  const p = c.command('pause');
  ws.drop();
  await assert.rejects(p, /closed before it answered/);
  assert.equal(c.state, 'disconnected');
});

test('pushed status messages become status events', async (t) => {
  const { c, ws } = client();
  t.after(() => c.stop());
  ws.open();
  const got = [];
  c.addEventListener('status', (e) => got.push(e.detail.status));
  ws.reply({ type: 'status', state: 'warming', stats: { fps_out: 0 } });
  assert.equal(got.length, 1);
  assert.equal(got[0].state, 'warming');
});

test('socket down: params, pause, resume and reset go over HTTP', async (t) => {
  const { c } = client(); // never opened
  t.after(() => c.stop());
  fetchReply = (url) => ({ status: 200, body: { type: 'ack', id: null, params: { seed: 7 } } });
  const ack = await c.setParams({ seed: 7 });
  assert.equal(ack.params.seed, 7);
  const post = fetches.find((f) => f.method === 'POST');
  assert.equal(post.url, '/api/v1/params');
  assert.deepEqual(post.body, { type: 'params', seed: 7 });
  for (const cmd of ['pause', 'resume', 'reset']) {
    await c.command(cmd);
    assert.equal(fetches.at(-1).url, `/api/v1/${cmd}`);
    assert.equal(fetches.at(-1).method, 'POST');
  }
  fetchReply = () => ({ status: 400, body: { type: 'error', id: null, message: 'prompt is empty' } });
  await assert.rejects(c.setParams({ prompt: 'x' }), { message: 'Prompt is empty. (HTTP 400)' });
  fetchReply = () => ({ status: 503, body: null });
  await assert.rejects(c.command('pause'), /no reason given.*HTTP 503/);
  await assert.rejects(c.setInput('test:ball'), /Not connected/);
});

test('no pushed status: GET /api/v1/status is polled', async (t) => {
  fetchReply = () => ({ status: 200, body: { state: 'loading' } });
  const { c } = client();
  t.after(() => c.stop());
  const st = await new Promise((resolve) => c.addEventListener('status', (e) => resolve(e.detail.status)));
  assert.equal(st.state, 'loading');
  assert.ok(fetches.some((f) => f.url === '/api/v1/status' && f.method === 'GET'));
});
