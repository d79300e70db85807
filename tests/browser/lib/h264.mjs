// h264.mjs: makes small H.264 Annex B clips with Debian's ffmpeg (libx264, Constrained
// Baseline, an access unit delimiter before each frame, SPS/PPS repeated on keyframes) and
// splits them into access units, as livegen's /ws/stream sends them. Test-only.
import { spawnSync } from 'node:child_process';

/** Returns [{key, data: Buffer}] for `frames` frames of the lavfi source `src`. */
export function makeClip({ src = 'testsrc2', width = 320, height = 200, fps = 15, frames = 60, keyint = 30 } = {}) {
  const r = spawnSync(
    'ffmpeg',
    [
      '-v', 'error', '-f', 'lavfi', '-i', `${src}=size=${width}x${height}:rate=${fps}`,
      '-frames:v', String(frames), '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'veryfast',
      '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
      '-x264-params', `keyint=${keyint}:min-keyint=${keyint}:scenecut=0:aud=1:repeat-headers=1`,
      '-f', 'h264', '-',
    ],
    { maxBuffer: 64 * 1024 * 1024, timeout: 30000 },
  );
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr}`);
  return splitAccessUnits(r.stdout);
}

/** Splits an Annex B stream at access unit delimiters (NAL type 9). */
export function splitAccessUnits(buf) {
  const starts = [];
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1 && (buf[i + 3] & 0x1f) === 9) {
      starts.push(i > 0 && buf[i - 1] === 0 ? i - 1 : i);
      i += 3;
    }
  }
  const aus = [];
  for (let k = 0; k < starts.length; k++) {
    const data = buf.subarray(starts[k], k + 1 < starts.length ? starts[k + 1] : buf.length);
    let key = false;
    for (let i = 0; i + 3 < data.length; i++) {
      if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1 && (data[i + 3] & 0x1f) === 5) {
        key = true;
        break;
      }
    }
    aus.push({ key, data });
  }
  return aus;
}
