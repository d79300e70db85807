// Unit tests of web/js/stats.js: the frame-rate meter and the status panel's text.
import test from 'node:test';
import assert from 'node:assert/strict';
import { RateMeter, formatMb, formatMs, showWarmup, stateLabel, statusView } from '../../../web/js/stats.js';

test('rate meter: steady 20 fps reads 20, and decays to 0 when frames stop', () => {
  const m = new RateMeter(2000);
  let t = 1000;
  for (let i = 0; i < 100; i++) {
    m.tick(t);
    t += 50;
  }
  assert.ok(Math.abs(m.rate(t) - 20) < 0.6, `rate ${m.rate(t)}`);
  assert.ok(m.rate(t + 1000) < 11);
  assert.equal(m.rate(t + 3000), 0);
  assert.equal(m.total, 100);
});

test('rate meter: a young meter reads the rate it has seen, not a diluted one', () => {
  const m = new RateMeter(2000);
  assert.equal(m.rate(0), 0);
  m.tick(0);
  assert.equal(m.rate(0), 0);
  for (let t = 100; t <= 1000; t += 100) m.tick(t);
  assert.equal(m.rate(1000), 10);
});

test('rate meter: a burst of frames at once does not read as a huge rate', () => {
  const m = new RateMeter(2000);
  for (let i = 0; i < 16; i++) m.tick(1000 + i * 0.5); // 16 frames within 8 ms
  assert.ok(m.rate(1001) <= 30, `rate ${m.rate(1001)}`);
  assert.ok(m.rate(2000) <= 16, `rate ${m.rate(2000)}`);
  assert.ok(m.rate(3500) <= 8);
});

test('rate meter: more events than its ring holds still gives a sane rate', () => {
  const m = new RateMeter(1000, 16);
  for (let t = 0; t < 1000; t += 10) m.tick(t); // 100 fps into a 16-slot ring
  const r = m.rate(1000);
  assert.ok(r > 0 && r <= 100, `rate ${r}`);
});

test('status view: a full status renders every field', () => {
  const v = statusView({
    state: 'running',
    params: { prompt: 'a fox', strength: 0.4, steps: 2, seed: 1, blend: 1, paused: false },
    input: 'test:smpte',
    stats: { fps_in: 15, fps_out: 7.25, latency_ms: 412.4, dropped: 3, frames_in: 100, frames_out: 90, viewers: 2, ttff_s: 3.14 },
    gpu: { name: 'NVIDIA H100 80GB HBM3', mem_used_mb: 20480, mem_total_mb: 81559 },
    model: { dit: 'wan2.1-1.3b', decoder: 'taehv', width: 832, height: 480 },
  });
  assert.equal(v.stateText, 'Live');
  assert.equal(v.fpsIn, '15');
  assert.equal(v.fpsOut, '7.3');
  assert.equal(v.latency, '412 ms');
  assert.equal(v.dropped, '3');
  assert.equal(v.viewers, '2');
  assert.equal(v.ttff, '3.1 s');
  assert.equal(v.gpuName, 'NVIDIA H100 80GB HBM3');
  assert.equal(v.gpuMem, '20.0 GiB / 79.6 GiB');
  assert.ok(Math.abs(v.gpuMemFrac - 20480 / 81559) < 1e-9);
  assert.equal(v.model, 'wan2.1-1.3b + taehv · 832×480');
  assert.equal(v.input, 'test:smpte');
  assert.equal(v.paused, false);
});

test('status view: partial or missing status shows dashes, never throws', () => {
  for (const s of [null, undefined, {}, { state: 'loading' }, { stats: null, gpu: 'x' }]) {
    const v = statusView(s);
    assert.equal(v.fpsOut, '–');
    assert.equal(v.gpuMem, '–');
    assert.equal(v.gpuMemFrac, null);
  }
  assert.equal(statusView({ state: 'loading' }).stateText, 'Loading model…');
  assert.equal(statusView({ state: 'paused' }).paused, true);
  assert.equal(statusView({ state: 'running', params: { paused: true } }).paused, true);
  assert.equal(statusView({ gpu: { mem_used_mb: 300 } }).gpuMem, '300 MiB');
  assert.equal(statusView({ gpu: { name: 'cpu', mem_used_mb: 0, mem_total_mb: 0 } }).gpuMem, '–', '0 = unknown');
  assert.equal(statusView({ stats: { ttff_s: 0 } }).ttff, '–', 'no first frame yet');
});

test('formatting and warm-up rules', () => {
  assert.equal(formatMs(12345), '12.3 s');
  assert.equal(formatMs(undefined), '–');
  assert.equal(formatMb(1536), '1.5 GiB');
  assert.equal(stateLabel('warming'), 'Warming up…');
  assert.equal(stateLabel('weird'), 'weird');
  assert.equal(showWarmup('loading', 10), true);
  assert.equal(showWarmup('running', 0), true);
  assert.equal(showWarmup('running', 1), false);
  assert.equal(showWarmup('paused', 5), false);
});
