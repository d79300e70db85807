// annexb.js: H.264 Annex B byte-stream helpers as pure functions (no DOM). Owns: splitting an
// access unit into NAL units at 3- and 4-byte start codes, recognising keyframes (IDR slices,
// SPS), and deriving a WebCodecs codec string ("avc1.PPCCLL") from an SPS. The page decodes
// Annex B directly (VideoDecoder with no `description`), so the decoder needs the SPS/PPS in
// band: it must start at an access unit that carries them plus an IDR slice.
// Runs on the page's main thread (and in node for the unit tests).

export const NAL = Object.freeze({
  SLICE: 1,
  IDR: 5,
  SEI: 6,
  SPS: 7,
  PPS: 8,
  AUD: 9,
});

/**
 * Finds the NAL units in an Annex B buffer. Returns [{type, refIdc, start, end}] where
 * [start, end) is the NAL payload (header byte included, start code excluded).
 * Bytes before the first start code are ignored; a buffer with no start code gives [].
 */
export function splitNalUnits(u8) {
  const units = [];
  const n = u8.byteLength;
  let i = 0;
  let cur = -1; // payload start of the unit being scanned
  while (i + 2 < n) {
    // Start code 00 00 01 (a 4-byte 00 00 00 01 is a zero byte followed by it).
    if (u8[i] === 0 && u8[i + 1] === 0 && u8[i + 2] === 1) {
      if (cur >= 0) {
        let end = i;
        while (end > cur && u8[end - 1] === 0) end--; // trailing_zero_8bits / 4-byte code
        if (end > cur) units.push(unitAt(u8, cur, end));
      }
      cur = i + 3;
      i += 3;
    } else {
      i++;
    }
  }
  if (cur >= 0 && cur < n) units.push(unitAt(u8, cur, n));
  return units;
}

function unitAt(u8, start, end) {
  const h = u8[start];
  return { type: h & 0x1f, refIdc: (h >> 5) & 3, start, end };
}

/** The NAL unit types in an access unit, in order. */
export function nalTypes(u8) {
  return splitNalUnits(u8).map((u) => u.type);
}

/** True when the access unit holds an IDR slice (decoding can start here). */
export function isKeyframe(u8) {
  return splitNalUnits(u8).some((u) => u.type === NAL.IDR);
}

/** True when the access unit carries parameter sets (SPS and PPS) in band. */
export function hasParameterSets(u8) {
  const t = nalTypes(u8);
  return t.includes(NAL.SPS) && t.includes(NAL.PPS);
}

/**
 * The WebCodecs codec string for the first SPS in `u8`, e.g. "avc1.42E01E" for Constrained
 * Baseline level 3.0; null when there is no SPS. (profile_idc, constraint flags and level_idc
 * are the 3 bytes after the NAL header; they cannot contain emulation prevention bytes unless
 * profile_idc is 0, which no profile uses.)
 */
export function codecFromSps(u8) {
  const sps = splitNalUnits(u8).find((u) => u.type === NAL.SPS);
  if (!sps || sps.end - sps.start < 4) return null;
  const hex = (b) => b.toString(16).toUpperCase().padStart(2, '0');
  return `avc1.${hex(u8[sps.start + 1])}${hex(u8[sps.start + 2])}${hex(u8[sps.start + 3])}`;
}

/**
 * Decides what to do with each incoming access unit so that the decoder only ever starts
 * (or restarts, after an error or a skip) on a keyframe. Frames before the first keyframe and
 * frames after a gap are dropped and counted. The server's keyframe flag is trusted, but an
 * access unit flagged as a keyframe with no IDR slice is not fed as one.
 */
export class KeyframeGate {
  constructor() {
    this.waiting = true;
    this.dropped = 0;
  }

  /** Returns 'key' | 'delta' (feed it to the decoder as that chunk type) or 'drop'. */
  admit(flagKeyframe, data) {
    const key = flagKeyframe && isKeyframe(data);
    if (this.waiting) {
      if (!key) {
        this.dropped++;
        return 'drop';
      }
      this.waiting = false;
      return 'key';
    }
    return key ? 'key' : 'delta';
  }

  /** Forget the decoder state (an error, a reset, or frames skipped): wait for a keyframe. */
  resync() {
    this.waiting = true;
  }
}
