// stats.js: numbers shown in the status panel, as pure functions (no DOM). Owns: a sliding
// window rate meter (frames shown per second on this page), and the mapping from a server
// status object (GET /api/v1/status or a pushed {"type":"status"}) to display strings.
// Runs on the page's main thread (and in node for the unit tests).

/** Counts events in a sliding time window; rate() is events per second over that window. */
export class RateMeter {
  constructor(windowMs = 2000, capacity = 512) {
    this.windowMs = windowMs;
    this.times = new Float64Array(capacity); // ring of timestamps, ms
    this.head = 0; // next write
    this.count = 0;
    this.total = 0;
    this.first = undefined; // time of the first tick, ms
  }

  tick(nowMs) {
    if (this.first === undefined) this.first = nowMs;
    this.times[this.head] = nowMs;
    this.head = (this.head + 1) % this.times.length;
    if (this.count < this.times.length) this.count++;
    this.total++;
  }

  /** Events per second: over the whole window once it is covered (so that a stream that
   *  stops decays to 0), over the observed span while the meter is younger than the window. */
  rate(nowMs) {
    const cap = this.times.length;
    let n = 0;
    let oldest = nowMs;
    for (let k = 0; k < this.count; k++) {
      const t = this.times[(this.head - 1 - k + cap) % cap];
      if (nowMs - t > this.windowMs) break;
      n++;
      oldest = t;
    }
    if (this.first === undefined || nowMs - this.first >= this.windowMs) return (n * 1000) / this.windowMs;
    // Young: over the time since the oldest event up to now, so that a burst (a new viewer
    // gets a keyframe's worth of frames at once) does not read as hundreds of fps.
    if (n < 2) return 0;
    return ((n - 1) * 1000) / Math.max(nowMs - oldest, 500);
  }
}

const STATE_TEXT = {
  connecting: 'Connecting…',
  loading: 'Loading model…',
  warming: 'Warming up…',
  running: 'Live',
  paused: 'Paused',
  error: 'Error',
  disconnected: 'Disconnected',
};

/** Human label for a server or connection state. */
export function stateLabel(state) {
  return STATE_TEXT[state] || (typeof state === 'string' && state ? state : 'Unknown');
}

function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function formatFps(v) {
  const x = num(v);
  return x === null ? '–' : x.toFixed(x >= 10 ? 0 : 1);
}

export function formatMs(v) {
  const x = num(v);
  if (x === null) return '–';
  if (x >= 10000) return `${(x / 1000).toFixed(1)} s`;
  return `${Math.round(x)} ms`;
}

export function formatMb(mb) {
  const x = num(mb);
  if (x === null) return '–';
  return x >= 1024 ? `${(x / 1024).toFixed(1)} GiB` : `${Math.round(x)} MiB`;
}

/**
 * Maps a status object to what the status panel shows. Missing fields become '–' so that a
 * partial status (a server still loading, an older server) still renders.
 */
export function statusView(st) {
  const s = st && typeof st === 'object' ? st : {};
  const stats = s.stats || {};
  const gpu = s.gpu || {};
  const model = s.model || {};
  const used = num(gpu.mem_used_mb);
  const total = num(gpu.mem_total_mb);
  const memFrac = used !== null && total ? Math.min(1, Math.max(0, used / total)) : null;
  let modelText = '–';
  if (model.dit || model.decoder) modelText = [model.dit, model.decoder].filter(Boolean).join(' + ');
  if (num(model.width) && num(model.height)) modelText += ` · ${model.width}×${model.height}`;
  return {
    state: typeof s.state === 'string' ? s.state : 'unknown',
    stateText: stateLabel(s.state),
    fpsIn: formatFps(stats.fps_in),
    fpsOut: formatFps(stats.fps_out),
    latency: formatMs(stats.latency_ms),
    dropped: num(stats.dropped) === null ? '–' : String(stats.dropped),
    viewers: num(stats.viewers) === null ? '–' : String(stats.viewers),
    ttff: num(stats.ttff_s) === null || stats.ttff_s <= 0 ? '–' : `${stats.ttff_s.toFixed(1)} s`, // 0 = no frame yet
    gpuName: typeof gpu.name === 'string' && gpu.name ? gpu.name : '–',
    // docs/API.md: memory is 0 when unknown (the CPU backend).
    gpuMem: used === null || (!used && !total) ? '–' : total ? `${formatMb(used)} / ${formatMb(total)}` : formatMb(used),
    gpuMemFrac: memFrac,
    model: modelText,
    input: typeof s.input === 'string' ? s.input : '–',
    params: s.params && typeof s.params === 'object' ? s.params : {},
    paused: s.state === 'paused' || Boolean(s.params && s.params.paused),
  };
}

/** Whether the page should keep its "warming up" overlay: no frame shown yet, or loading. */
export function showWarmup(serverState, framesShown) {
  if (serverState === 'loading' || serverState === 'warming') return true;
  return framesShown === 0;
}
