// page.test.mjs: the page in Debian's Chromium (playwright-core), as a user would use it.
// Against a running livegen when LG_BASE_URL is set (tests/browser/run starts one), otherwise
// against the protocol mock in lib/mock_server.mjs (same wire protocol, docs/API.md; no
// diffusion). Checks: decoded frames on the canvas change over time (pixels, not just "no
// error"), FPS shown, a prompt typed with the keyboard reaches GET /api/v1/status, bad values
// are refused in plain words, pause freezes and resume restarts the picture, publishing
// Chromium's fake camera (WHIP or the WebSocket JPEG fallback) becomes the input, a phone-width
// layout with no sideways scrolling, labels and focus order; writes screenshots to
// tests/browser/out/. Run: node --test tests/browser/page.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, watchPage } from './lib/chromium.mjs';
import { startMock } from './lib/mock_server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, 'out');
const T = { timeout: 60000 };

let base; // http://127.0.0.1:PORT
let mock = null; // the protocol mock, when not against livegen
let browser;
let page;
let problems;

const against = process.env.LG_BASE_URL ? 'livegen' : 'mock';

async function apiStatus() {
  const r = await fetch(`${base}/api/v1/status`, { cache: 'no-store' });
  assert.equal(r.status, 200, 'GET /api/v1/status');
  return r.json();
}

/** Polls fn() until it returns a truthy value or `ms` pass; returns the last value. */
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let v;
  let lastErr;
  while (Date.now() < end) {
    try {
      v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const recent = [...new Set(problems)].slice(-4).join(' | ') || 'none';
  assert.fail(`timed out after ${ms} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ''}; recent page problems: ${recent}`);
}

/** A coarse picture of a canvas: 8x8 grid of mean luma, the mean colour and the spread. */
function sample(canvasId) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const w = c.width;
    const h = c.height;
    const d = c.getContext('2d').getImageData(0, 0, w, h).data;
    const G = 8;
    const grid = new Array(G * G).fill(0);
    const cnt = new Array(G * G).fill(0);
    let r = 0;
    let g = 0;
    let b = 0;
    let s = 0;
    let s2 = 0;
    for (let y = 0; y < h; y += 2) {
      for (let x = 0; x < w; x += 2) {
        const i = 4 * (y * w + x);
        const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        const k = Math.floor((y * G) / h) * G + Math.floor((x * G) / w);
        grid[k] += l;
        cnt[k]++;
        r += d[i];
        g += d[i + 1];
        b += d[i + 2];
        s += l;
        s2 += l * l;
      }
    }
    const n = Math.max(1, Math.ceil(w / 2) * Math.ceil(h / 2));
    return {
      w,
      h,
      grid: grid.map((v, k) => v / Math.max(1, cnt[k])),
      mean: [r / n, g / n, b / n],
      std: Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2)),
    };
  }, canvasId);
}

function gridDiff(a, b) {
  let d = 0;
  for (let k = 0; k < a.grid.length; k++) d += Math.abs(a.grid[k] - b.grid[k]);
  return d / a.grid.length;
}

function statNumber(id) {
  return page.$eval(`#${id}`, (e) => parseFloat(e.textContent));
}

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  if (against === 'livegen') base = process.env.LG_BASE_URL.replace(/\/$/, '');
  else {
    mock = await startMock();
    base = mock.url;
  }
  browser = await launch();
  page = await browser.context.newPage();
  problems = watchPage(page);
});

after(async () => {
  if (page && !page.isClosed()) {
    await page.setViewportSize({ width: 1280, height: 860 }).catch(() => {});
    await page.screenshot({ path: path.join(OUT, 'page-end.png') }).catch(() => {});
  }
  if (browser) await browser.close();
  if (mock) await mock.close();
});

describe(`page against ${against}`, () => {
  // The real server may still be generating and loading the tiny model when /health answers.
  const FIRST_FRAME_MS = against === 'livegen' ? 150000 : 30000;
  test('loads, decodes the WebSocket H.264 stream onto the canvas, and the picture moves', { timeout: FIRST_FRAME_MS + 60000 }, async () => {
    if (mock) mock.restartWarmup(2500, 2500); // a server that is still loading, then warming up
    const res = await page.goto(`${base}/`);
    assert.equal(res.status(), 200);
    assert.equal(await page.title(), 'livegen');
    if (mock) {
      // Until the first frame a loading, then warm-up, indicator covers the video.
      await until(async () => (await page.textContent('#warmup-text')) === 'Loading the model…', 5000, 'the loading indicator');
      assert.equal(await page.textContent('#conn-text'), 'Loading model…');
      assert.equal(await page.$eval('#warmup', (e) => e.classList.contains('gone')), false);
      await until(async () => /^Warming up/.test(await page.textContent('#warmup-text')), 5000, 'the warm-up indicator');
      assert.equal(await page.$eval('#warmup', (e) => e.classList.contains('gone')), false);
    }
    // The warm-up overlay is up until the first frame, then goes.
    await until(() => page.evaluate(() => window.livegen && window.livegen.output && window.livegen.output.framesShown > 0), FIRST_FRAME_MS, 'a first decoded frame');
    await until(() => page.$eval('#warmup', (e) => e.classList.contains('gone')), 5000, 'the warm-up overlay to go');
    const a = await sample('output-canvas');
    const cfg = await page.evaluate(() => window.livegen.output.config);
    assert.equal(a.w, cfg.width, 'canvas sized to the stream');
    assert.equal(a.h, cfg.height);
    assert.ok(a.std > 2, `the picture is not blank (luma spread ${a.std.toFixed(2)})`);
    const diff = await until(async () => {
      const d = gridDiff(a, await sample('output-canvas'));
      return d > 1 ? d : 0;
    }, 20000, 'the picture to change');
    assert.ok(diff > 1);
    assert.deepEqual(problems, []);
  });

  test('status shows the live state, a non-zero FPS and the GPU', T, async () => {
    await until(async () => (await statNumber('stat-fps-out')) > 0, 15000, 'a non-zero FPS out');
    await until(async () => (await statNumber('stat-fps-shown')) > 0, 15000, 'a non-zero FPS shown here');
    const st = await apiStatus();
    assert.equal(await page.textContent('#conn-text'), 'Live');
    assert.equal(await page.textContent('#stat-gpu'), st.gpu.name || '–');
    assert.match(await page.textContent('#stat-latency'), /\d+ (ms|s)$/);
    fs.mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, 'page.png'), fullPage: true });
  });

  test('a prompt typed and applied with the keyboard reaches GET /api/v1/status', T, async () => {
    const prompt = `a lighthouse in a storm, oil painting ${Date.now() % 100000}`;
    await page.fill('#blend', '2.5');
    // Reach the prompt box by tabbing, as a keyboard user would.
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'prompt');
    }
    assert.ok(reached, 'the prompt box is in the tab order');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(prompt);
    await page.keyboard.press('Control+Enter');
    await until(async () => /Prompt applied/.test(await page.textContent('#notice')), 10000, 'the acknowledgement');
    const st = await apiStatus();
    assert.equal(st.params.prompt, prompt);
    assert.equal(st.params.blend, 2.5, 'the blend time from the page');
    assert.match(await page.textContent('#notice'), /blending over 2.5 s/);
  });

  test('strength and seed changes apply live; a bad value is refused in plain words', T, async () => {
    await page.fill('#seed', '1234');
    await page.dispatchEvent('#seed', 'change');
    await until(async () => (await apiStatus()).params.seed === 1234, 10000, 'seed 1234 in the status');
    await page.$eval('#strength', (e) => {
      e.value = '0.3';
      e.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await until(async () => Math.abs((await apiStatus()).params.strength - 0.3) < 1e-6, 10000, 'strength 0.3 in the status');
    await page.fill('#steps', '9');
    await page.dispatchEvent('#steps', 'change');
    await until(() => page.isVisible('#error'), 5000, 'an error message');
    assert.match(await page.textContent('#error'), /Denoising steps must be a whole number from 1 to 4/);
    assert.equal(await page.getAttribute('#steps', 'aria-invalid'), 'true');
    assert.notEqual((await apiStatus()).params.steps, 9);
    await page.fill('#steps', '1');
    await page.dispatchEvent('#steps', 'change');
    await until(async () => (await apiStatus()).params.steps === 1, 10000, 'steps 1 in the status');
    await until(async () => !(await page.isVisible('#error')), 5000, 'a good value to clear the error');
    assert.equal(await page.getAttribute('#steps', 'aria-invalid'), null);
  });

  test('pause freezes the picture, resume brings it back', { timeout: 90000 }, async () => {
    await page.click('#pause');
    try {
      await until(async () => (await apiStatus()).state === 'paused', 10000, 'state paused');
      await until(async () => (await page.getAttribute('#pause', 'aria-pressed')) === 'true', 5000, 'the pause button pressed');
      await until(async () => (await page.textContent('#conn-text')) === 'Paused', 5000, 'the Paused label');
      assert.equal(await page.textContent('#pause'), 'Resume');
      // Frames already in the pipeline still arrive, in bursts, for about the pipeline's
      // latency (seconds on the CPU backend); after that the picture must hold still.
      const lat = (await apiStatus()).stats.latency_ms || 0;
      await new Promise((r) => setTimeout(r, Math.min(30000, Math.max(3000, 1.5 * lat + 1000))));
      const last = await sample('output-canvas');
      await new Promise((r) => setTimeout(r, 3000));
      const b = await sample('output-canvas');
      assert.ok(gridDiff(last, b) < 0.5, `frozen while paused (diff ${gridDiff(last, b).toFixed(2)})`);
      // (The server may go on sending the frozen frame: only what is seen counts.)
      await page.click('#pause');
      await until(async () => (await apiStatus()).state === 'running', 10000, 'state running');
      await until(async () => gridDiff(b, await sample('output-canvas')) > 1, 40000, 'the picture to move again');
      await until(async () => (await page.getAttribute('#pause', 'aria-pressed')) === 'false', 5000, 'the pause button released');
    } finally {
      // Leave the server running for the tests after this one, whatever happened here.
      if ((await apiStatus()).state === 'paused') await fetch(`${base}/api/v1/resume`, { method: 'POST' });
    }
  });

  test('side-by-side view plays the input stream too', T, async () => {
    await page.check('#show-input');
    assert.equal(await page.isVisible('#pane-input'), true);
    await until(() => page.evaluate(() => window.livegen.input && window.livegen.input.framesShown > 1), 30000, 'input frames');
    const s = await sample('input-canvas');
    assert.ok(s.std > 2, 'the input view is not blank');
  });

  for (const choice of ['auto', 'ws']) {
  const publishTitle =
    choice === 'ws'
      ? 'publishing the fake camera as JPEG frames over /ws/publish (chosen in the page) becomes the input'
      : against === 'mock'
        ? 'publishing the fake camera: WHIP refused (503), JPEG frames over the WebSocket become the input'
        : 'publishing the fake camera (WHIP when it works) becomes the input and changes the output';
  test(publishTitle, { timeout: 120000 }, async (t) => {
    // The input view shows what the engine reads: turn it on and note how input and output
    // look while the server's own test pattern is the input.
    if (!(await page.isChecked('#show-input'))) await page.check('#show-input');
    await until(() => page.evaluate(() => window.livegen.input && window.livegen.input.framesShown > 0), 30000, 'input frames');
    // Chromium's fake camera is a green frame with a spinning disc; the server's test
    // patterns are not green. Frames of an earlier input can still be in the pipeline (seconds
    // of them on the CPU backend): wait for the test pattern in the input view first.
    const green = (x) => x.mean[1] > 60 && x.mean[1] > 1.6 * Math.max(x.mean[0], x.mean[2]);
    await until(async () => !green(await sample('input-canvas')), 45000, 'the test pattern in the input view');
    await new Promise((r) => setTimeout(r, 1500));
    const before = await sample('output-canvas');
    const beforeIn = await apiStatus();
    await page.selectOption('#input-source', 'camera');
    assert.equal(await page.isVisible('#publish-method'), true);
    await page.selectOption('#publish-method', choice);
    await page.click('#apply-input');
    try {
      await until(async () => /^Sending your camera over/.test(await page.textContent('#publish-info')), 30000, 'publishing to start');
      const method = await page.evaluate(() => window.livegen.publish.method);
      assert.ok(method === 'whip' || method === 'ws');
      if (choice === 'ws') assert.equal(method, 'ws');
      t.diagnostic(`published over ${method}`);
      const dist = (a, b) => Math.hypot(a.mean[0] - b.mean[0], a.mean[1] - b.mean[1], a.mean[2] - b.mean[2]);
      if (against === 'mock') {
        // The mock answers WHIP with 503, so the page must have fallen back to JPEG frames.
        assert.equal(method, 'ws');
        const n0 = mock.published.jpeg;
        await until(() => mock.published.jpeg >= n0 + 5, 10000, 'JPEG frames at the server');
        assert.equal(mock.published.jpeg, mock.published.frames, 'every frame is a whole JPEG');
        assert.equal((await apiStatus()).input, 'ws');
      } else {
        await until(async () => (await apiStatus()).input === method, 15000, `input ${method} in the status`);
        // The camera replaces the test pattern: first in the engine's input view, then in
        // the output.
        await until(async () => green(await sample('input-canvas')), 45000, 'the camera in the input view');
        await until(async () => {
          const now = await sample('output-canvas');
          return dist(now, before) > 6 || gridDiff(now, before) > 12;
        }, 45000, 'the output to change with the camera');
      }
      assert.notEqual(beforeIn.input, (await apiStatus()).input);
      await page.screenshot({ path: path.join(OUT, 'page-publishing.png'), fullPage: true });
    } finally {
      // Stop sending and go back to a test pattern from the page, whatever happened above,
      // so that the tests after this one see a moving picture.
      if (await page.isVisible('#stop-publish')) await page.click('#stop-publish');
      await until(async () => !(await page.isVisible('#stop-publish')), 5000, 'publishing to stop');
      await page.selectOption('#input-source', 'test:smpte');
      await page.click('#apply-input');
      await until(async () => (await apiStatus()).input === 'test:smpte', 10000, 'input test:smpte');
    }
  });
  }

  test('sharing a screen (getDisplayMedia) is sent as the input', T, async () => {
    await page.selectOption('#input-source', 'screen');
    await page.selectOption('#publish-method', 'ws');
    assert.equal(await page.textContent('#apply-input'), 'Start sending');
    await page.click('#apply-input');
    try {
      await until(async () => /^Sending your screen over the WebSocket/.test(await page.textContent('#publish-info')), 30000, 'screen sharing to start');
      await until(async () => (await apiStatus()).input === 'ws', 15000, 'input ws in the status');
      if (against === 'mock') {
        const n0 = mock.published.jpeg;
        await until(() => mock.published.jpeg >= n0 + 5, 10000, 'JPEG frames of the screen at the server');
      }
    } finally {
      if (await page.isVisible('#stop-publish')) await page.click('#stop-publish');
      await until(async () => !(await page.isVisible('#stop-publish')), 5000, 'sharing to stop');
      await page.selectOption('#input-source', 'test:smpte');
      await page.click('#apply-input');
      await until(async () => (await apiStatus()).input === 'test:smpte', 10000, 'input test:smpte');
    }
  });

  test('an input the server refuses is reported in plain words and changes nothing', T, async (t) => {
    const before = (await apiStatus()).input;
    await page.selectOption('#input-source', 'custom');
    assert.equal(await page.isVisible('#input-custom'), true);
    await page.fill('#input-custom', 'bogus://nowhere');
    await page.click('#apply-input');
    await until(() => page.isVisible('#error'), 10000, 'an error message');
    const msg = await page.textContent('#error');
    assert.ok(msg.length > 10 && /[a-z]/.test(msg), `a sentence from the server: ${msg}`);
    t.diagnostic(`shown: ${msg}`);
    assert.equal((await apiStatus()).input, before);
    await page.selectOption('#input-source', 'test:smpte');
    await page.click('#apply-input');
    await until(async () => (await apiStatus()).input === 'test:smpte', 10000, 'input test:smpte');
    await until(async () => !(await page.isVisible('#error')), 5000, 'the error to clear after a good change');
  });

  test('reset is acknowledged and the picture goes on', T, async () => {
    const resets0 = mock ? mock.resets : 0;
    await page.click('#reset');
    await until(async () => /^Reset:/.test(await page.textContent('#notice')), 10000, 'the reset acknowledgement');
    if (mock) assert.equal(mock.resets, resets0 + 1);
    const a = await sample('output-canvas');
    await until(async () => gridDiff(a, await sample('output-canvas')) > 1, 40000, 'the picture to move after the reset');
    assert.equal((await apiStatus()).state, 'running');
  });

  test('WebRTC playback: plays over WHEP, or says why not and falls back to the WebSocket', T, async (t) => {
    await page.selectOption('#transport', 'webrtc');
    const r = await until(async () => {
      const st = await page.evaluate(() => {
        const v = document.getElementById('output-video');
        return {
          fallback: document.getElementById('transport').value === 'ws',
          err: document.getElementById('error').textContent,
          vw: v.videoWidth,
          t: v.currentTime,
        };
      });
      if (st.fallback) return { kind: 'fallback', ...st };
      if (st.vw > 0 && st.t > 0.5) return { kind: 'webrtc', ...st };
      return null;
    }, 40000, 'WebRTC playback or a fallback');
    t.diagnostic(r.kind === 'webrtc' ? `played over WHEP (${r.vw} px wide)` : `fell back: ${r.err}`);
    if (against === 'mock') assert.equal(r.kind, 'fallback', 'the mock refuses WHEP with 503');
    if (r.kind === 'fallback') {
      assert.match(r.err, /WebRTC.*Falling back to WebSocket playback\./);
      assert.equal(await page.isVisible('#output-canvas'), true);
      assert.equal(await page.isVisible('#output-video'), false);
      await until(() => page.evaluate(() => window.livegen.output.framesShown > 2), 20000, 'frames after the fallback');
    } else {
      // The <video> shows moving pictures: compare two grabs of it.
      const grab = () =>
        page.evaluate(() => {
          const v = document.getElementById('output-video');
          const c = document.createElement('canvas');
          c.width = v.videoWidth;
          c.height = v.videoHeight;
          const x = c.getContext('2d');
          x.drawImage(v, 0, 0);
          const d = x.getImageData(0, 0, c.width, c.height).data;
          const g = [];
          for (let i = 0; i < d.length; i += 4 * 211) g.push(d[i] + d[i + 1] + d[i + 2]);
          return g;
        });
      const a = await grab();
      await until(async () => {
        const b = await grab();
        let diff = 0;
        for (let i = 0; i < a.length; i++) diff += Math.abs(a[i] - b[i]);
        return diff / a.length > 3;
      }, 20000, 'the WebRTC picture to change');
      await page.selectOption('#transport', 'ws');
      await until(() => page.evaluate(() => window.livegen.output.framesShown > 2), 30000, 'WebSocket frames again');
    }
  });

  test('controls have labels; status and errors are announced', T, async () => {
    const unlabeled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea, button')]
        .filter((e) => !e.closest('[hidden]'))
        .filter((e) => {
          if (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')) return false;
          if (e.tagName === 'BUTTON') return e.textContent.trim() === '';
          return !(e.labels && e.labels.length);
        })
        .map((e) => e.id || e.outerHTML.slice(0, 60)),
    );
    assert.deepEqual(unlabeled, []);
    assert.equal(await page.getAttribute('#error', 'role'), 'alert');
    assert.equal(await page.getAttribute('#notice', 'aria-live'), 'polite');
    assert.equal(await page.getAttribute('#publish-info', 'aria-live'), 'polite');
  });

  test('fullscreen from the button and from the F key', T, async () => {
    await page.click('#fullscreen');
    await until(() => page.evaluate(() => document.fullscreenElement && document.fullscreenElement.id === 'theater'), 5000, 'the video in fullscreen');
    await until(async () => (await page.textContent('#fullscreen')) === 'Exit fullscreen', 5000, 'the button to say Exit fullscreen');
    await page.click('#fullscreen');
    await until(() => page.evaluate(() => !document.fullscreenElement), 5000, 'fullscreen to end');
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.keyboard.press('f');
    await until(() => page.evaluate(() => document.fullscreenElement && document.fullscreenElement.id === 'theater'), 5000, 'fullscreen from the F key');
    await page.keyboard.press('f');
    await until(() => page.evaluate(() => !document.fullscreenElement), 5000, 'fullscreen to end from the F key');
    // Typing an "f" in the prompt must not toggle fullscreen.
    await page.focus('#prompt');
    await page.keyboard.press('f');
    assert.equal(await page.evaluate(() => document.fullscreenElement), null);
  });

  if (against === 'mock') {
    // Only the mock can be stopped and started again from here.
    test('a lost server shows as Disconnected, and the page comes back by itself', T, async () => {
      const port = Number(new URL(base).port);
      await mock.close();
      await until(async () => (await page.textContent('#conn-text')) === 'Disconnected', 10000, 'the Disconnected label');
      assert.equal(await page.getAttribute('#conn', 'data-state'), 'disconnected');
      mock = await startMock({ port, loadingMs: 0, warmingMs: 0 });
      await until(async () => (await page.textContent('#conn-text')) === 'Live', 20000, 'the Live label again');
      const a = await sample('output-canvas');
      await until(async () => gridDiff(a, await sample('output-canvas')) > 1, 20000, 'frames again');
    });
  }

  test('fits a phone-width screen without sideways scrolling', T, async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await new Promise((r) => setTimeout(r, 300));
    const m = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth }));
    assert.ok(m.sw <= m.cw + 1, `page ${m.sw}px wide in a ${m.cw}px screen`);
    const box = await page.locator('#output-canvas').boundingBox();
    assert.ok(box && box.width > 300 && box.x >= 0 && box.x + box.width <= 391, `the video fills the width (${JSON.stringify(box)})`);
    assert.ok(await page.isVisible('#prompt'));
    await page.screenshot({ path: path.join(OUT, 'page-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  });
});
