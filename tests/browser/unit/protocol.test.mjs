// Unit tests of web/js/protocol.js: the /ws/stream and /ws/control wire formats. No server,
// no browser: node --test tests/browser/unit
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  FRAME_HEADER_BYTES,
  ProtocolError,
  buildCommand,
  buildInputMessage,
  buildParamsMessage,
  buildStreamFrame,
  describeServerError,
  pageOptions,
  parseControlMessage,
  parseStreamConfig,
  parseStreamFrame,
  validateParams,
  wsUrl,
} from '../../../web/js/protocol.js';

test('stream config: a valid config is returned with its fields', () => {
  const c = parseStreamConfig('{"type":"config","codec":"avc1.42E01E","width":640,"height":360,"fps":16,"format":"annexb"}');
  assert.deepEqual(c, { codec: 'avc1.42E01E', width: 640, height: 360, fps: 16, format: 'annexb' });
});

test('stream config: format defaults to annexb, fps to 0', () => {
  const c = parseStreamConfig('{"type":"config","codec":"avc1.64001F","width":8,"height":8}');
  assert.equal(c.format, 'annexb');
  assert.equal(c.fps, 0);
});

test('stream config: unusable configs are rejected with a reason', () => {
  const bad = [
    ['not json', /not JSON/],
    ['{"type":"status"}', /config/],
    ['[1,2]', /config/],
    ['{"type":"config","codec":"vp8","width":8,"height":8}', /codec/],
    ['{"type":"config","codec":"avc1.42E01E","width":0,"height":8}', /width/],
    ['{"type":"config","codec":"avc1.42E01E","width":8,"height":1.5}', /height/],
    ['{"type":"config","codec":"avc1.42E01E","width":8,"height":99999}', /height/],
    ['{"type":"config","codec":"avc1.42E01E","width":8,"height":8,"format":"avcc"}', /format/],
    ['{"type":"config","codec":"avc1.42E01E","width":8,"height":8,"fps":-1}', /fps/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseStreamConfig(text), (e) => e instanceof ProtocolError && re.test(e.message), text);
});

test('stream frame: flags, big-endian microsecond pts and the access unit are read', () => {
  const au = Uint8Array.from([0, 0, 0, 1, 0x65, 0xaa, 0xbb]);
  const msg = new Uint8Array(FRAME_HEADER_BYTES + au.length);
  msg[0] = 0x01; // keyframe
  // pts = 0x0000_0102_0304_0506 us
  msg.set([0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06], 1);
  msg.set(au, FRAME_HEADER_BYTES);
  const f = parseStreamFrame(msg.buffer);
  assert.equal(f.keyframe, true);
  assert.equal(f.ptsUs, 0x010203040506);
  assert.deepEqual([...f.data], [...au]);
});

test('stream frame: flag bits other than bit 0 do not make a keyframe', () => {
  const msg = buildStreamFrame(false, 5, Uint8Array.from([0, 0, 1, 0x41]));
  msg[0] = 0xfe;
  assert.equal(parseStreamFrame(msg).keyframe, false);
});

test('stream frame: works on a Uint8Array view with an offset (no copy)', () => {
  const inner = buildStreamFrame(true, 123456789, Uint8Array.from([0, 0, 1, 0x65, 7]));
  const big = new Uint8Array(inner.length + 10);
  big.set(inner, 10);
  const f = parseStreamFrame(big.subarray(10));
  assert.equal(f.ptsUs, 123456789);
  assert.equal(f.keyframe, true);
  assert.equal(f.data.buffer, big.buffer);
  assert.deepEqual([...f.data], [0, 0, 1, 0x65, 7]);
});

test('stream frame: short messages and absurd pts are rejected', () => {
  assert.throws(() => parseStreamFrame(new Uint8Array(0)), ProtocolError);
  assert.throws(() => parseStreamFrame(new Uint8Array(FRAME_HEADER_BYTES)), /too short/);
  const m = new Uint8Array(FRAME_HEADER_BYTES + 1).fill(0xff);
  assert.throws(() => parseStreamFrame(m), /pts/);
});

test('stream frame: build and parse round-trip', () => {
  const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const f = parseStreamFrame(buildStreamFrame(true, 9007199254740991, data));
  assert.equal(f.ptsUs, Number.MAX_SAFE_INTEGER);
  assert.deepEqual([...f.data], [...data]);
});

test('params: only the given fields are sent, prompt trimmed, id attached', () => {
  assert.deepEqual(buildParamsMessage({ prompt: '  a red fox  ', blend: 2 }, 7), { type: 'params', prompt: 'a red fox', blend: 2, id: 7 });
  assert.deepEqual(buildParamsMessage({ strength: 0.25 }), { type: 'params', strength: 0.25 });
  assert.deepEqual(buildParamsMessage({ steps: 4, seed: 0 }, 1), { type: 'params', steps: 4, seed: 0, id: 1 });
});

test('params: invalid values are refused in plain words before anything is sent', () => {
  const cases = [
    [{ prompt: '   ' }, /prompt is empty/],
    [{ prompt: 'x'.repeat(2048) }, /too long \(2048 bytes/],
    [{ prompt: 'é'.repeat(1024) }, /too long \(2048 bytes/], // 2 UTF-8 bytes each
    [{ prompt: 'a\0b' }, /NUL/],
    [{ prompt: 5 }, /must be text/],
    [{ strength: 1.5 }, /Strength/],
    [{ strength: NaN }, /Strength/],
    [{ strength: '0.5' }, /Strength/],
    [{ steps: 0 }, /steps/],
    [{ steps: 5 }, /steps/],
    [{ steps: 2.5 }, /steps/],
    [{ seed: -1 }, /seed/],
    [{ seed: 2 ** 53 }, /seed/],
    [{ seed: 1.5 }, /seed/],
    [{ blend: -0.5 }, /blend/],
    [{}, /Nothing to change/],
  ];
  for (const [p, re] of cases) assert.throws(() => buildParamsMessage(p), re, JSON.stringify(p));
  assert.deepEqual(validateParams({ strength: 0, steps: 1, seed: 4294967295, blend: 0, prompt: 'ok' }), []);
  assert.deepEqual(validateParams({ strength: 1, steps: 4, seed: Number.MAX_SAFE_INTEGER, blend: 60, prompt: 'x'.repeat(2047) }), []);
  assert.equal(validateParams({ strength: 2, steps: 0 }).length, 2);
});

test('commands and input messages', () => {
  assert.deepEqual(buildCommand('pause', 3), { type: 'pause', id: 3 });
  assert.deepEqual(buildCommand('resume'), { type: 'resume' });
  assert.deepEqual(buildCommand('reset', 9), { type: 'reset', id: 9 });
  assert.throws(() => buildCommand('shutdown'), ProtocolError);
  assert.deepEqual(buildInputMessage(' test:smpte ', 4), { type: 'input', input: 'test:smpte', id: 4 });
  assert.throws(() => buildInputMessage(''), /Choose an input/);
});

test('control replies: ack, status, error in plain words, garbage tolerated', () => {
  assert.deepEqual(parseControlMessage('{"type":"ack","id":3}'), { type: 'ack', id: 3 });
  assert.equal(parseControlMessage('{"type":"status","state":"running"}').state, 'running');
  const e = parseControlMessage('{"type":"error","id":4,"message":"strength out of range"}');
  assert.equal(e.type, 'error');
  assert.equal(e.id, 4);
  assert.equal(e.message, 'Strength out of range.');
  assert.equal(parseControlMessage('{"type":"error"}').message, 'The server refused the change (no reason given).');
  assert.equal(parseControlMessage('nope').type, 'invalid');
  assert.equal(parseControlMessage('{"x":1}').type, 'invalid');
  assert.equal(parseControlMessage('{"type":"hello"}').type, 'other');
  assert.equal(describeServerError('Already a sentence!'), 'Already a sentence!');
});

test('URLs and page options', () => {
  assert.equal(wsUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, '/ws/control'), 'ws://127.0.0.1:8080/ws/control');
  assert.equal(wsUrl({ protocol: 'https:', host: 'a.example' }, '/ws/stream?source=input'), 'wss://a.example/ws/stream?source=input');
  assert.deepEqual(pageOptions(''), { transport: 'ws', showInput: false, publish: 'auto', debug: false });
  assert.deepEqual(pageOptions('?transport=webrtc&input=1&publish=ws'), { transport: 'webrtc', showInput: true, publish: 'ws', debug: false });
  assert.equal(pageOptions('?transport=bogus&publish=ftp').transport, 'ws');
  assert.equal(pageOptions('?publish=ftp').publish, 'auto');
});
