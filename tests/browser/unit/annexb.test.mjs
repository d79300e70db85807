// Unit tests of web/js/annexb.js: NAL splitting, keyframe detection, codec strings, and the
// keyframe gate that decides what reaches the decoder. Handmade byte strings plus one real
// libx264 clip from ffmpeg. No server, no browser.
import test from 'node:test';
import assert from 'node:assert/strict';
import { KeyframeGate, NAL, codecFromSps, hasParameterSets, isKeyframe, nalTypes, splitNalUnits } from '../../../web/js/annexb.js';
import { makeClip, splitAccessUnits } from '../lib/h264.mjs';

const SC4 = [0, 0, 0, 1];
const SC3 = [0, 0, 1];
const sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05];
const pps = [0x68, 0xce, 0x0f, 0xc8];
const idr = [0x65, 0x88, 0x84, 0x00, 0x21];
const slice = [0x41, 0x9a, 0x02];
const aud = [0x09, 0xf0];
const u8 = (...parts) => Uint8Array.from(parts.flat());

test('splits at 3- and 4-byte start codes; payloads exclude start codes', () => {
  const buf = u8(SC4, aud, SC4, sps, SC3, pps, SC3, idr);
  const units = splitNalUnits(buf);
  assert.deepEqual(units.map((u) => u.type), [NAL.AUD, NAL.SPS, NAL.PPS, NAL.IDR]);
  assert.deepEqual([...buf.subarray(units[1].start, units[1].end)], sps);
  assert.deepEqual([...buf.subarray(units[2].start, units[2].end)], pps); // the 3-byte code is not in the SPS
  assert.deepEqual([...buf.subarray(units[3].start, units[3].end)], idr);
  assert.equal(units[3].refIdc, 3);
});

test('a 4-byte start code does not leave its zero byte on the previous unit', () => {
  const buf = u8(SC3, sps, SC4, pps);
  const [a] = splitNalUnits(buf);
  assert.equal(a.end - a.start, sps.length);
});

test('no start code, empty and truncated buffers give no units and do not throw', () => {
  assert.deepEqual(splitNalUnits(new Uint8Array(0)), []);
  assert.deepEqual(splitNalUnits(u8([0x65, 1, 2, 3])), []);
  assert.deepEqual(splitNalUnits(u8([0, 0, 1])), []);
  assert.deepEqual(splitNalUnits(u8([0, 0])), []);
  assert.equal(isKeyframe(u8([1, 2, 3])), false);
});

test('keyframes are access units with an IDR slice; parameter sets are seen', () => {
  assert.equal(isKeyframe(u8(SC4, sps, SC4, pps, SC4, idr)), true);
  assert.equal(isKeyframe(u8(SC4, aud, SC4, slice)), false);
  assert.equal(isKeyframe(u8(SC4, sps, SC4, pps)), false); // headers alone cannot start decoding
  assert.equal(hasParameterSets(u8(SC4, sps, SC4, pps, SC4, idr)), true);
  assert.equal(hasParameterSets(u8(SC4, sps, SC4, idr)), false);
  assert.deepEqual(nalTypes(u8(SC4, aud, SC3, slice)), [NAL.AUD, NAL.SLICE]);
});

test('codec string comes from the SPS profile, constraints and level', () => {
  assert.equal(codecFromSps(u8(SC4, aud, SC4, sps, SC4, pps, SC4, idr)), 'avc1.42C01E');
  assert.equal(codecFromSps(u8(SC4, [0x67, 0x64, 0x00, 0x1f, 0xac])), 'avc1.64001F');
  assert.equal(codecFromSps(u8(SC4, slice)), null);
  assert.equal(codecFromSps(u8(SC4, [0x67, 0x42])), null); // truncated SPS
});

test('keyframe gate: drops until a real keyframe, then passes deltas', () => {
  const g = new KeyframeGate();
  const key = u8(SC4, sps, SC4, pps, SC4, idr);
  const delta = u8(SC4, slice);
  assert.equal(g.admit(false, delta), 'drop');
  assert.equal(g.admit(true, delta), 'drop'); // flagged key without an IDR slice: not trusted
  assert.equal(g.dropped, 2);
  assert.equal(g.admit(true, key), 'key');
  assert.equal(g.admit(false, delta), 'delta');
  assert.equal(g.admit(false, key), 'delta'); // unflagged IDR: fed as the server said
  assert.equal(g.admit(true, key), 'key');
  g.resync();
  assert.equal(g.admit(false, delta), 'drop');
  assert.equal(g.admit(true, key), 'key');
  assert.equal(g.dropped, 3);
});

test('a real libx264 stream: keyframes where x264 put them, SPS gives the baseline codec', () => {
  const aus = makeClip({ width: 64, height: 48, fps: 10, frames: 25, keyint: 10 });
  assert.equal(aus.length, 25);
  const keys = aus.map((a, i) => (isKeyframe(a.data) ? i : -1)).filter((i) => i >= 0);
  assert.deepEqual(keys, [0, 10, 20]);
  for (const i of keys) assert.equal(hasParameterSets(aus[i].data), true);
  assert.match(codecFromSps(aus[0].data), /^avc1\.42[0-9A-F]{2}[0-9A-F]{2}$/);
  const g = new KeyframeGate();
  const verdicts = aus.slice(5).map((a) => g.admit(a.key, a.data));
  assert.deepEqual(verdicts.slice(0, 6), ['drop', 'drop', 'drop', 'drop', 'drop', 'key']);
  assert.equal(verdicts.filter((v) => v === 'drop').length, 5);
  // The splitter agrees with itself on the concatenated stream.
  const whole = Buffer.concat(aus.map((a) => a.data));
  assert.equal(splitAccessUnits(whole).length, 25);
});
