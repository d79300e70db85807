// mock_server.mjs: a stand-in for `livegen serve` that speaks the page's protocol (HTTP
// status/params, /ws/control, /ws/stream with H.264 from ffmpeg, /ws/publish), so the page
// can be developed and its browser tests run where no livegen server is built. It does no
// diffusion: the output stream is a looping test clip, paused stops it, and what the page
// sends is recorded in `mock.log` for the tests to check. WHEP/WHIP answer 503.
// Run alone to preview the page: node tests/browser/lib/mock_server.mjs [port]
// Test-only; runs on node's event loop.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { acceptUpgrade } from './ws_server.mjs';
import { makeClip } from './h264.mjs';
import { buildStreamFrame, validateParams } from '../../../web/js/protocol.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const WEB_ROOT = path.resolve(HERE, '../../../web');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

export async function startMock({ port = 0, fps = 15, loadingMs = 600, warmingMs = 600 } = {}) {
  const W = 320;
  const H = 200;
  const clips = {
    output: makeClip({ src: 'testsrc2', width: W, height: H, fps, frames: 60, keyint: 15 }),
    input: makeClip({ src: 'testsrc', width: W, height: H, fps, frames: 60, keyint: 15 }),
  };
  let t0 = Date.now();
  const mock = {
    params: { prompt: 'a watercolor painting of a city at dusk', strength: 0.5, steps: 2, seed: 42, blend: 1, paused: false },
    input: 'test:smpte',
    log: [], // every control message received, in order
    published: { frames: 0, jpeg: 0, bytes: 0 },
    resets: 0,
    framesOut: 0,
    viewers: new Set(),
    controls: new Set(),
    sentTimes: [],
  };

  /** Start over as a server that is loading for `load` ms, then warming for `warm` ms. */
  mock.restartWarmup = (load, warm) => {
    t0 = Date.now();
    loadingMs = load;
    warmingMs = warm;
  };

  function state() {
    const t = Date.now() - t0;
    if (t < loadingMs) return 'loading';
    if (t < loadingMs + warmingMs) return 'warming';
    return mock.params.paused ? 'paused' : 'running';
  }

  function fpsOut() {
    const now = Date.now();
    mock.sentTimes = mock.sentTimes.filter((t) => now - t < 2000);
    return mock.sentTimes.length / 2;
  }

  function status() {
    return {
      state: state(),
      params: { ...mock.params },
      input: mock.input,
      stats: {
        fps_in: state() === 'running' ? fps : 0,
        fps_out: fpsOut(),
        latency_ms: 180,
        dropped: 0,
        frames_in: mock.framesOut,
        frames_out: mock.framesOut,
        viewers: mock.viewers.size,
        ttff_s: 1.2,
      },
      gpu: { name: 'Mock GPU (CPU backend)', mem_used_mb: 812, mem_total_mb: 81559 },
      model: { dit: 'wan-tiny (mock)', decoder: 'taehv-tiny', width: W, height: H },
    };
  }

  function applyMessage(m) {
    mock.log.push(m);
    switch (m.type) {
      case 'params': {
        const unknown = Object.keys(m).filter((k) => !['type', 'id', 'via', 'prompt', 'strength', 'steps', 'seed', 'blend'].includes(k));
        if (unknown.length) return { type: 'error', id: m.id ?? null, message: `unknown field "${unknown[0]}"` };
        const p = {};
        for (const k of ['prompt', 'strength', 'steps', 'seed', 'blend']) if (k in m) p[k] = m[k];
        const errs = validateParams(p);
        if (errs.length || Object.keys(p).length === 0) return { type: 'error', id: m.id, message: errs[0] || 'no parameters given' };
        Object.assign(mock.params, p);
        return { type: 'ack', id: m.id, params: { ...mock.params } };
      }
      case 'pause':
      case 'resume':
        mock.params.paused = m.type === 'pause';
        return { type: 'ack', id: m.id ?? null, params: { ...mock.params } };
      case 'reset':
        mock.resets++;
        return { type: 'ack', id: m.id ?? null, params: { ...mock.params } };
      case 'input':
        if (typeof m.input !== 'string' || !/^(test:[a-z0-9-]+|file:.+|v4l2:\/dev\/.+|(rtmps?|srt):\/\/.+|whip|ws|none)$/.test(m.input))
          return { type: 'error', id: m.id, message: `unknown input "${m.input}"` };
        mock.input = m.input;
        return { type: 'ack', id: m.id, input: m.input };
      default:
        return { type: 'error', id: m.id, message: `unknown message type "${m.type}"` };
    }
  }

  function serveStatic(req, res) {
    const u = new URL(req.url, 'http://x');
    let rel = decodeURIComponent(u.pathname);
    if (rel === '/') rel = '/index.html';
    const file = path.resolve(WEB_ROOT, `.${rel}`);
    if (!file.startsWith(WEB_ROOT + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  }

  function json(res, code, obj) {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(obj));
  }

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (req.method === 'GET' && u.pathname === '/health') return json(res, 200, { status: 'ok' });
    if (req.method === 'GET' && u.pathname === '/api/v1/status') return json(res, 200, status());
    if (req.method === 'POST' && u.pathname === '/api/v1/params') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        let m;
        try {
          m = JSON.parse(body);
        } catch {
          return json(res, 400, { type: 'error', message: 'body is not JSON' });
        }
        const r = applyMessage({ ...m, type: 'params', via: 'http' });
        json(res, r.type === 'ack' ? 200 : 400, r);
      });
      return;
    }
    const cmd = /^\/api\/v1\/(pause|resume|reset)$/.exec(u.pathname);
    if (req.method === 'POST' && cmd) {
      req.resume();
      return json(res, 200, applyMessage({ type: cmd[1], id: null, via: 'http' }));
    }
    if (req.method === 'POST' && (u.pathname === '/whep' || u.pathname === '/whip')) {
      return json(res, 503, { type: 'error', id: null, message: 'WebRTC is not available in this build' });
    }
    if (req.method === 'GET') return serveStatic(req, res);
    res.writeHead(405);
    res.end();
  });

  const upgraded = new Set(); // WebSocket sockets leave the http server's books: close them here
  server.on('upgrade', (req, socket) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    const u = new URL(req.url, 'http://x');
    const ws = acceptUpgrade(req, socket);
    if (!ws) return;
    if (u.pathname === '/ws/control') {
      mock.controls.add(ws);
      ws.sendText(JSON.stringify({ type: 'status', ...status() }));
      ws.on('text', (t) => {
        let m;
        try {
          m = JSON.parse(t);
        } catch {
          ws.sendText(JSON.stringify({ type: 'error', message: 'message is not JSON' }));
          return;
        }
        ws.sendText(JSON.stringify(applyMessage(m)));
      });
      ws.on('close', () => mock.controls.delete(ws));
    } else if (u.pathname === '/ws/stream') {
      const source = u.searchParams.get('source') === 'input' ? 'input' : 'output';
      const clip = clips[source];
      ws.sendText(JSON.stringify({ type: 'config', codec: 'avc1.42C00C', width: W, height: H, fps, format: 'annexb' }));
      // Every viewer starts at the clip's start (a keyframe), like a server that sends each
      // new viewer the last keyframe onwards.
      const viewer = { ws, i: 0, pts: 0 };
      if (source === 'output') mock.viewers.add(viewer);
      ws.on('close', () => mock.viewers.delete(viewer));
      viewer.timer = setInterval(() => {
        if (!ws.open) return clearInterval(viewer.timer);
        if (state() !== 'running') return;
        const au = clip[viewer.i];
        viewer.i = (viewer.i + 1) % clip.length;
        const frame = buildStreamFrame(au.key, viewer.pts, au.data);
        viewer.pts += Math.round(1e6 / fps);
        if (ws.buffered < 1 << 20) ws.sendBinary(frame);
        if (source === 'output') {
          mock.framesOut++;
          mock.sentTimes.push(Date.now());
        }
      }, 1000 / fps);
    } else if (u.pathname === '/ws/publish') {
      ws.on('binary', (b) => {
        mock.published.frames++;
        mock.published.bytes += b.length;
        if (b.length > 4 && b[0] === 0xff && b[1] === 0xd8 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9) mock.published.jpeg++;
      });
    } else {
      ws.close();
    }
  });

  const pushTimer = setInterval(() => {
    const s = JSON.stringify({ type: 'status', ...status() });
    for (const c of mock.controls) c.sendText(s);
  }, 1000);

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  mock.url = `http://127.0.0.1:${server.address().port}`;
  mock.close = () =>
    new Promise((resolve) => {
      clearInterval(pushTimer);
      for (const v of mock.viewers) clearInterval(v.timer);
      server.close(() => resolve());
      server.closeAllConnections();
      for (const sock of upgraded) sock.destroy();
    });
  return mock;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const m = await startMock({ port: Number(process.argv[2] || 8080) });
  console.log(`protocol mock serving web/ at ${m.url}`);
}
