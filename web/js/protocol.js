// protocol.js: livegen's wire formats as pure functions (no DOM, no sockets), so that node
// --test can check them without a browser or a server. Owns: parsing /ws/stream messages
// (config text + binary frame header), building and validating /ws/control messages,
// parsing control replies, turning server errors into plain words, endpoint URLs.
// Runs on the page's main thread (and in node for the unit tests).

/** Bytes before the access unit in a binary /ws/stream message: flags u8 + pts u64 BE. */
export const FRAME_HEADER_BYTES = 9;
export const FLAG_KEYFRAME = 0x01;

/** Limits the page enforces before sending (docs/API.md "params"); the server checks again
 *  and has the last word. */
export const LIMITS = Object.freeze({
  promptMaxBytes: 2047, // UTF-8 bytes
  strength: [0, 1],
  steps: [1, 4],
  seed: [0, Number.MAX_SAFE_INTEGER],
  blend: [0, 60], // seconds over which the old prompt fades into the new one
});

const utf8 = new TextEncoder();

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function positiveInt(v, name, max) {
  if (!Number.isInteger(v) || v <= 0 || v > max)
    throw new ProtocolError(`stream config: ${name} must be an integer in 1..${max}, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Parses the first (text) message of /ws/stream.
 * {"type":"config","codec":"avc1.42E01E","width":W,"height":H,"fps":F,"format":"annexb"}
 * Returns {codec, width, height, fps, format}; throws ProtocolError when it is not usable.
 */
export function parseStreamConfig(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    throw new ProtocolError('stream config is not JSON');
  }
  if (!isObject(m) || m.type !== 'config') throw new ProtocolError('expected a {"type":"config"} message first');
  if (typeof m.codec !== 'string' || !/^avc[13]\.[0-9A-Fa-f]{6}$/.test(m.codec))
    throw new ProtocolError(`stream config: unsupported codec ${JSON.stringify(m.codec)} (want avc1.PPCCLL)`);
  const format = m.format === undefined ? 'annexb' : m.format;
  if (format !== 'annexb') throw new ProtocolError(`stream config: unsupported format ${JSON.stringify(format)}`);
  const fps = m.fps === undefined ? 0 : Number(m.fps);
  if (!Number.isFinite(fps) || fps < 0 || fps > 1000) throw new ProtocolError('stream config: bad fps');
  return {
    codec: m.codec,
    width: positiveInt(m.width, 'width', 16384),
    height: positiveInt(m.height, 'height', 16384),
    fps,
    format,
  };
}

/**
 * Parses one binary /ws/stream message: 1 byte flags (bit0 keyframe), 8 bytes presentation
 * time in microseconds (big-endian), then one Annex B access unit.
 * `buf` is an ArrayBuffer or a Uint8Array. Returns {keyframe, ptsUs, data} where data is a
 * Uint8Array view (no copy) of the access unit. Throws ProtocolError on a short message.
 */
export function parseStreamFrame(buf) {
  const u8 = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (u8.byteLength <= FRAME_HEADER_BYTES)
    throw new ProtocolError(`stream frame too short (${u8.byteLength} bytes, need > ${FRAME_HEADER_BYTES})`);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const flags = dv.getUint8(0);
  const pts = dv.getBigUint64(1, false);
  if (pts > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError('stream frame pts out of range');
  return {
    keyframe: (flags & FLAG_KEYFRAME) !== 0,
    ptsUs: Number(pts),
    data: u8.subarray(FRAME_HEADER_BYTES),
  };
}

/** Builds a binary stream frame (the inverse of parseStreamFrame; used by tests and mocks). */
export function buildStreamFrame(keyframe, ptsUs, data) {
  const out = new Uint8Array(FRAME_HEADER_BYTES + data.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, keyframe ? FLAG_KEYFRAME : 0);
  dv.setBigUint64(1, BigInt(ptsUs), false);
  out.set(data, FRAME_HEADER_BYTES);
  return out;
}

function inRange(v, [lo, hi]) {
  return typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi;
}

/**
 * Checks generation parameters the user typed. Accepts any subset of
 * {prompt, strength, steps, seed, blend}. Returns a list of plain-words problems, [] if fine.
 */
export function validateParams(p) {
  const errs = [];
  if (!isObject(p)) return ['parameters must be an object'];
  if ('prompt' in p) {
    if (typeof p.prompt !== 'string') errs.push('The prompt must be text.');
    else if (p.prompt.trim() === '') errs.push('The prompt is empty: type what you want to see.');
    else if (p.prompt.includes('\0')) errs.push('The prompt contains a NUL character.');
    else {
      const bytes = utf8.encode(p.prompt.trim()).length;
      if (bytes > LIMITS.promptMaxBytes)
        errs.push(`The prompt is too long (${bytes} bytes, at most ${LIMITS.promptMaxBytes}).`);
    }
  }
  if ('strength' in p && !inRange(p.strength, LIMITS.strength))
    errs.push('Strength must be a number from 0 to 1.');
  if ('steps' in p && !(Number.isInteger(p.steps) && inRange(p.steps, LIMITS.steps)))
    errs.push(`Denoising steps must be a whole number from ${LIMITS.steps[0]} to ${LIMITS.steps[1]}.`);
  if ('seed' in p && !(Number.isInteger(p.seed) && inRange(p.seed, LIMITS.seed)))
    errs.push(`The seed must be a whole number from 0 to ${LIMITS.seed[1]}.`);
  if ('blend' in p && !inRange(p.blend, LIMITS.blend))
    errs.push(`The blend duration must be from ${LIMITS.blend[0]} to ${LIMITS.blend[1]} seconds.`);
  return errs;
}

const PARAM_KEYS = ['prompt', 'strength', 'steps', 'seed', 'blend'];

/**
 * Builds a /ws/control "params" message from the fields present in `p` (others are left as
 * they are on the server). Throws ProtocolError with plain words when a value is invalid.
 */
export function buildParamsMessage(p, id) {
  const errs = validateParams(p);
  if (errs.length) throw new ProtocolError(errs.join(' '));
  const m = { type: 'params' };
  for (const k of PARAM_KEYS) if (k in p && p[k] !== undefined) m[k] = k === 'prompt' ? p[k].trim() : p[k];
  if (Object.keys(m).length === 1) throw new ProtocolError('Nothing to change.');
  if (id !== undefined) m.id = id;
  return m;
}

/** pause / resume / reset control messages. */
export function buildCommand(type, id) {
  if (!['pause', 'resume', 'reset'].includes(type)) throw new ProtocolError(`unknown command ${type}`);
  const m = { type };
  if (id !== undefined) m.id = id;
  return m;
}

/** Input sources the server may switch to (the config's `input` syntax): test:<pattern>,
 *  file:PATH, v4l2:/dev/videoN, rtmp://..., srt://..., whip, ws, none. */
export function buildInputMessage(input, id) {
  if (typeof input !== 'string' || input.trim() === '' || input.length > 1024)
    throw new ProtocolError('Choose an input source.');
  const m = { type: 'input', input: input.trim() };
  if (id !== undefined) m.id = id;
  return m;
}

/**
 * Parses a text message from /ws/control. Returns {type:'ack'|'error'|'status'|'other', ...}.
 * Never throws: garbage becomes {type:'invalid', message}.
 */
export function parseControlMessage(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    return { type: 'invalid', message: 'The server sent a message that is not JSON.' };
  }
  if (!isObject(m) || typeof m.type !== 'string')
    return { type: 'invalid', message: 'The server sent a message without a type.' };
  if (m.type === 'error') return { ...m, message: describeServerError(m.message) };
  if (m.type === 'ack' || m.type === 'status') return m;
  return { ...m, type: 'other', originalType: m.type };
}

/** Turns a server error message (any shape) into a short sentence for people. */
export function describeServerError(message) {
  if (typeof message !== 'string' || message.trim() === '') return 'The server refused the change (no reason given).';
  let s = message.trim();
  s = s.charAt(0).toUpperCase() + s.slice(1);
  if (!/[.!?]$/.test(s)) s += '.';
  return s;
}

/** Builds a ws:// or wss:// URL on the page's own origin. `loc` is window.location-like. */
export function wsUrl(loc, path) {
  const proto = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${loc.host}${path}`;
}

/** Reads page options from the query string: ?transport=ws|webrtc&input=1&publish=ws|whip. */
export function pageOptions(search) {
  const q = new URLSearchParams(search || '');
  const transport = q.get('transport') === 'webrtc' ? 'webrtc' : 'ws';
  const publish = ['ws', 'whip'].includes(q.get('publish')) ? q.get('publish') : 'auto';
  return { transport, showInput: q.get('input') === '1', publish, debug: q.get('debug') === '1' };
}
