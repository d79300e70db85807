// app.js: wires livegen's page together. Owns: the DOM (status panel, controls, messages),
// which output player runs (WebSocket + WebCodecs onto a canvas, or WHEP into a <video>), the
// optional input view, publishing from this browser, and keeping the controls in step with
// the server's status without overwriting what the user is typing.
// Runs on the page's main thread. window.livegen exposes the live objects for debugging.

import { LIMITS, pageOptions, validateParams, wsUrl } from './protocol.js';
import { formatFps, formatMs, showWarmup, stateLabel, statusView } from './stats.js';
import { ControlClient } from './control.js';
import { WsPlayer } from './ws_player.js';
import { WhepPlayer } from './webrtc.js';
import { openSource, startPublishing } from './publish.js';

const $ = (id) => document.getElementById(id);
const el = {
  conn: $('conn'),
  connText: $('conn-text'),
  gpuSummary: $('gpu-summary'),
  stage: $('stage'),
  theater: $('theater'),
  paneInput: $('pane-input'),
  inputCanvas: $('input-canvas'),
  outputCanvas: $('output-canvas'),
  outputVideo: $('output-video'),
  warmup: $('warmup'),
  warmupText: $('warmup-text'),
  showInput: $('show-input'),
  transport: $('transport'),
  fullscreen: $('fullscreen'),
  stat: {
    state: $('stat-state'),
    fpsIn: $('stat-fps-in'),
    fpsOut: $('stat-fps-out'),
    fpsShown: $('stat-fps-shown'),
    latency: $('stat-latency'),
    dropped: $('stat-dropped'),
    viewers: $('stat-viewers'),
    ttff: $('stat-ttff'),
    gpu: $('stat-gpu'),
    mem: $('stat-mem'),
    memBar: $('stat-mem-bar'),
    model: $('stat-model'),
  },
  promptForm: $('prompt-form'),
  prompt: $('prompt'),
  blend: $('blend'),
  genForm: $('gen-form'),
  strength: $('strength'),
  strengthOut: $('strength-out'),
  steps: $('steps'),
  seed: $('seed'),
  seedRandom: $('seed-random'),
  pause: $('pause'),
  reset: $('reset'),
  inputForm: $('input-form'),
  inputSource: $('input-source'),
  publishMethod: $('publish-method'),
  publishRow: $('publish-row'),
  customRow: $('custom-row'),
  inputCustom: $('input-custom'),
  applyInput: $('apply-input'),
  stopPublish: $('stop-publish'),
  publishInfo: $('publish-info'),
  notice: $('notice'),
  error: $('error'),
};

const opts = pageOptions(location.search);
const app = {
  control: new ControlClient({ wsUrl: wsUrl(location, '/ws/control'), apiBase: '/api/v1/' }),
  output: null, // WsPlayer or WhepPlayer
  input: null, // WsPlayer for the server's input view
  publish: null, // {publisher, method, stream}
  status: null, // last status object from the server
  view: statusView(null),
  whepStats: null,
  dirty: new Set(), // controls the user changed that the server has not confirmed yet
};
window.livegen = app;

/* ---------- messages ---------- */

let noticeTimer = 0;
function notice(text) {
  el.notice.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (el.notice.textContent = ''), 6000);
}

// An error about fields (`keys`: ['steps'], ...) stays until one of them is applied (or 12 s
// pass): a success elsewhere, e.g. a strength change landing a moment later, keeps it.
let errorTimer = 0;
let errorKeys = null;
function showError(text, keys = null) {
  el.error.textContent = text;
  el.error.hidden = false;
  errorKeys = keys;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(hideError, 12000);
}
function hideError() {
  el.error.hidden = true;
  el.error.textContent = '';
  errorKeys = null;
}
/** After a success that concerned `keys` (none: not about a field). */
function clearError(keys = []) {
  if (errorKeys && !keys.some((k) => errorKeys.includes(k))) return;
  hideError();
}

/* ---------- output and input players ---------- */

function stopOutput() {
  if (app.output) {
    app.output.stop();
    app.output = null;
  }
  app.whepStats = null;
}

function startWsOutput() {
  el.outputVideo.hidden = true;
  el.outputCanvas.hidden = false;
  const p = new WsPlayer(el.outputCanvas, wsUrl(location, '/ws/stream?source=output'));
  p.addEventListener('problem', (ev) => showError(ev.detail.message));
  p.addEventListener('state', render);
  p.addEventListener('frame', onFirstFrame);
  p.addEventListener('config', fitScreen);
  app.output = p;
  p.start();
}

/** Shapes a video box like the stream in it, so there are no black bars. */
function fitScreen(ev) {
  const { width, height } = ev.detail.config;
  const screen = ev.target.canvas.closest('.screen');
  if (screen && width > 0 && height > 0) screen.style.aspectRatio = `${width} / ${height}`;
}

async function startWhepOutput() {
  el.outputCanvas.hidden = true;
  el.outputVideo.hidden = false;
  const p = new WhepPlayer(el.outputVideo, '/whep');
  app.output = p;
  p.addEventListener('state', (ev) => {
    if (ev.detail.state === 'failed') showError('The WebRTC connection failed. Try WebSocket playback.');
    render();
  });
  try {
    await p.start();
  } catch (e) {
    if (app.output !== p) return;
    showError(`${e.message} Falling back to WebSocket playback.`);
    el.transport.value = 'ws';
    stopOutput();
    startWsOutput();
  }
}

function startOutput() {
  stopOutput();
  if (el.transport.value === 'webrtc') startWhepOutput();
  else startWsOutput();
  render();
}

let firstFrameSeen = false;
function onFirstFrame() {
  if (firstFrameSeen) return;
  firstFrameSeen = true;
  render();
}

function framesShown() {
  const o = app.output;
  if (!o) return 0;
  if (o instanceof WsPlayer) return o.framesShown;
  return app.whepStats ? app.whepStats.frames : 0;
}

function setSplit(on) {
  el.stage.dataset.view = on ? 'split' : 'output';
  el.paneInput.hidden = !on;
  if (on && !app.input) {
    app.input = new WsPlayer(el.inputCanvas, wsUrl(location, '/ws/stream?source=input'));
    app.input.addEventListener('problem', (ev) => showError(`Input view: ${ev.detail.message}`));
    app.input.addEventListener('config', fitScreen);
    app.input.start();
  } else if (!on && app.input) {
    app.input.stop();
    app.input = null;
  }
}

/* ---------- status ---------- */

function connState() {
  if (app.control.state !== 'open' && !app.status) return app.control.state === 'disconnected' ? 'disconnected' : 'connecting';
  if (app.statusFailing) return 'disconnected';
  return app.view.state;
}

function render() {
  const v = app.view;
  const st = connState();
  el.conn.dataset.state = st;
  el.connText.textContent =
    st === 'disconnected' ? 'Disconnected' : st === 'connecting' ? 'Connecting…' : v.stateText;
  el.gpuSummary.textContent = v.gpuName === '–' ? '' : `${v.gpuName} · ${v.gpuMem}`;

  const o = app.output;
  let localFps = null;
  let localDrop = 0;
  let decodeMs = null;
  if (o instanceof WsPlayer) {
    localFps = o.fps();
    localDrop = o.dropped;
    decodeMs = o.decodeMs;
  } else if (app.whepStats) {
    localFps = app.whepStats.fps;
    localDrop = app.whepStats.dropped;
    decodeMs = app.whepStats.jitterMs;
  }
  const s = el.stat;
  s.state.textContent = st === 'disconnected' ? 'Disconnected' : v.stateText;
  s.fpsIn.textContent = v.fpsIn;
  s.fpsOut.textContent = v.fpsOut;
  s.fpsShown.textContent = localFps === null ? '–' : formatFps(localFps);
  const serverLat = app.status && app.status.stats ? app.status.stats.latency_ms : null;
  if (typeof serverLat === 'number') {
    const total = serverLat + (decodeMs || 0);
    s.latency.textContent = formatMs(total);
    s.latency.title = `Server pipeline ${formatMs(serverLat)} + this page ${decodeMs === null ? '–' : formatMs(decodeMs)}`;
  } else {
    s.latency.textContent = decodeMs === null ? '–' : formatMs(decodeMs);
  }
  s.dropped.textContent = localDrop ? `${v.dropped} (+${localDrop} here)` : v.dropped;
  s.viewers.textContent = v.viewers;
  s.ttff.textContent = v.ttff;
  s.gpu.textContent = v.gpuName;
  s.mem.textContent = v.gpuMem;
  s.memBar.hidden = v.gpuMemFrac === null; // total unknown: no bar
  s.memBar.value = v.gpuMemFrac === null ? 0 : v.gpuMemFrac;
  s.model.textContent = v.model;

  // Warm-up overlay until frames are on screen.
  const warm = showWarmup(v.state, framesShown());
  el.warmup.classList.toggle('gone', !warm);
  el.warmupText.textContent =
    st === 'disconnected'
      ? 'Waiting for the server…'
      : v.state === 'loading'
        ? 'Loading the model…'
        : v.state === 'warming'
          ? 'Warming up (compiling and filling caches)…'
          : v.state === 'error'
            ? 'The server reported an error.'
            : 'Waiting for the first frame…';

  el.pause.setAttribute('aria-pressed', String(v.paused));
  el.pause.textContent = v.paused ? 'Resume' : 'Pause';
}

function syncControls(params) {
  const set = (input, value, key) => {
    if (value === undefined || value === null || app.dirty.has(key) || document.activeElement === input) return;
    input.value = String(value);
  };
  set(el.prompt, params.prompt, 'prompt');
  set(el.blend, params.blend, 'blend');
  set(el.strength, params.strength, 'strength');
  set(el.steps, params.steps, 'steps');
  set(el.seed, params.seed, 'seed');
  el.strengthOut.value = Number(el.strength.value).toFixed(2);
}

function onStatus(status) {
  app.status = status;
  app.statusFailing = false;
  app.view = statusView(status);
  if (status.state === 'error' && status.message) showError(`Server: ${status.message}`);
  syncControls(app.view.params);
  if (typeof status.input === 'string' && !app.publish && !app.dirty.has('input') && !el.inputForm.contains(document.activeElement)) {
    const opt = [...el.inputSource.options].find((o) => o.value === status.input);
    if (opt) el.inputSource.value = status.input;
    else if (!['ws', 'whip'].includes(status.input) && el.inputSource.value !== 'custom') {
      el.inputSource.value = 'custom';
      el.inputCustom.value = status.input;
    }
    onSourceChoice();
  }
  render();
}

/* ---------- controls ---------- */

function markInvalid(params, bad) {
  const inputs = { prompt: el.prompt, blend: el.blend, strength: el.strength, steps: el.steps, seed: el.seed };
  for (const k of Object.keys(params)) {
    if (!inputs[k]) continue;
    if (bad && validateParams({ [k]: params[k] }).length) inputs[k].setAttribute('aria-invalid', 'true');
    else inputs[k].removeAttribute('aria-invalid');
  }
}

async function applyParams(params, what) {
  const errs = validateParams(params);
  markInvalid(params, errs.length > 0);
  if (errs.length) {
    showError(errs.join(' '), Object.keys(params));
    return false;
  }
  try {
    const ack = await app.control.setParams(params);
    // Applied: from now on the server's value is the truth for these fields. (On failure
    // they stay dirty, so that what the user typed is not overwritten while they fix it.)
    for (const k of Object.keys(params)) app.dirty.delete(k);
    if (ack && ack.params && typeof ack.params === 'object') {
      app.view = { ...app.view, params: ack.params };
      syncControls(ack.params);
    }
    clearError(Object.keys(params));
    notice(what);
    return true;
  } catch (e) {
    showError(e.message, Object.keys(params));
    return false;
  }
}

function numberOf(input) {
  return input.value.trim() === '' ? NaN : Number(input.value);
}

el.promptForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const blend = numberOf(el.blend);
  const prompt = el.prompt.value;
  applyParams({ prompt, blend }, blend > 0 ? `Prompt applied; blending over ${blend} s.` : 'Prompt applied.');
});
el.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    el.promptForm.requestSubmit();
  }
});
// A field the user has touched is not overwritten by status pushes until it is applied.
for (const [key, input] of [['prompt', el.prompt], ['blend', el.blend], ['steps', el.steps], ['seed', el.seed]])
  input.addEventListener('input', () => app.dirty.add(key));
el.genForm.addEventListener('submit', (ev) => ev.preventDefault());

let strengthTimer = 0;
el.strength.addEventListener('input', () => {
  el.strengthOut.value = Number(el.strength.value).toFixed(2);
  app.dirty.add('strength');
  clearTimeout(strengthTimer);
  strengthTimer = setTimeout(() => applyParams({ strength: Number(el.strength.value) }, `Strength ${Number(el.strength.value).toFixed(2)} applied.`), 200);
});
el.steps.addEventListener('change', () => applyParams({ steps: numberOf(el.steps) }, `Denoising steps: ${el.steps.value}.`));
el.seed.addEventListener('change', () => applyParams({ seed: numberOf(el.seed) }, `Seed ${el.seed.value} applied.`));
el.seedRandom.addEventListener('click', () => {
  const seed = Math.floor(Math.random() * LIMITS.seed[1]);
  el.seed.value = String(seed);
  applyParams({ seed }, `Seed ${seed} applied.`);
});

el.pause.addEventListener('click', async () => {
  const cmd = app.view.paused ? 'resume' : 'pause';
  try {
    const ack = await app.control.command(cmd);
    clearError();
    notice(cmd === 'pause' ? 'Paused.' : 'Resumed.');
    // Show it now (statuses pushed after the ack confirm it).
    const paused = ack && ack.params && typeof ack.params.paused === 'boolean' ? ack.params.paused : cmd === 'pause';
    app.view = { ...app.view, paused, state: paused ? 'paused' : app.view.state === 'paused' ? 'running' : app.view.state };
    app.view.stateText = stateLabel(app.view.state);
    render();
  } catch (e) {
    showError(e.message);
  }
});
el.reset.addEventListener('click', async () => {
  try {
    await app.control.command('reset');
    clearError();
    notice('Reset: the model starts fresh from the next frame.');
  } catch (e) {
    showError(e.message);
  }
});

/* ---------- input and publishing ---------- */

async function stopPublishing() {
  const p = app.publish;
  app.publish = null;
  el.stopPublish.hidden = true;
  el.publishInfo.textContent = '';
  if (!p) return;
  await p.publisher.stop();
  for (const t of p.stream.getTracks()) t.stop();
}

async function publishFrom(kind) {
  await stopPublishing();
  let stream;
  try {
    stream = await openSource(kind);
  } catch (e) {
    showError(e.message);
    return;
  }
  el.publishInfo.textContent = 'Connecting…';
  try {
    const method = el.publishMethod.value;
    const r = await startPublishing(stream, method, { whipUrl: '/whip', wsUrl: wsUrl(location, '/ws/publish') });
    app.publish = { ...r, stream };
    if (r.notice) notice(r.notice);
    r.publisher.addEventListener('problem', (ev) => showError(ev.detail.message));
    // JPEG frames over the WebSocket are used only while the input is `ws` (docs/API.md);
    // WHIP should switch the input by itself, but ask for it anyway so that the engine reads
    // what we send whatever the input was.
    try {
      await app.control.setInput(r.method);
    } catch (e) {
      showError(`Sending, but the server did not switch to it: ${e.message}`);
    }
    el.publishInfo.textContent = `Sending your ${kind === 'screen' ? 'screen' : 'camera'} over ${r.method === 'whip' ? 'WebRTC (WHIP)' : 'the WebSocket as JPEG frames'}.`;
    el.stopPublish.hidden = false;
    clearError();
    stream.getVideoTracks()[0].addEventListener('ended', () => {
      stopPublishing();
      notice('Sharing ended.');
    });
  } catch (e) {
    for (const t of stream.getTracks()) t.stop();
    el.publishInfo.textContent = '';
    showError(e.message);
  }
}

el.inputForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  app.dirty.delete('input'); // from now on the server's input shows in the list again
  const v = el.inputSource.value;
  if (v === 'camera' || v === 'screen') {
    await publishFrom(v);
    return;
  }
  let spec = v;
  if (v === 'custom') {
    spec = el.inputCustom.value.trim();
    if (!spec) {
      showError('Type the address of the input, for example rtmp://host/app/key or file:/path/video.mp4.');
      el.inputCustom.focus();
      return;
    }
  }
  await stopPublishing();
  try {
    await app.control.setInput(spec);
    clearError();
    notice(`Input: ${v === 'custom' ? spec : el.inputSource.selectedOptions[0].textContent}.`);
  } catch (e) {
    showError(e.message);
  }
});
function onSourceChoice() {
  const local = el.inputSource.value === 'camera' || el.inputSource.value === 'screen';
  el.publishRow.hidden = !local;
  el.customRow.hidden = el.inputSource.value !== 'custom';
  el.applyInput.textContent = local ? 'Start sending' : 'Use this input';
}
el.inputSource.addEventListener('change', () => {
  app.dirty.add('input'); // a choice not yet applied: status pushes must not undo it
  onSourceChoice();
});
el.inputCustom.addEventListener('input', () => app.dirty.add('input'));
el.stopPublish.addEventListener('click', async () => {
  await stopPublishing();
  notice('Stopped sending.');
});

/* ---------- view ---------- */

el.showInput.addEventListener('change', () => setSplit(el.showInput.checked));
el.transport.addEventListener('change', () => {
  firstFrameSeen = false;
  startOutput();
});

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else if (el.theater.requestFullscreen) el.theater.requestFullscreen().catch((e) => showError(`Fullscreen is not available: ${e.message}`));
}
el.fullscreen.addEventListener('click', toggleFullscreen);
document.addEventListener('keydown', (ev) => {
  const t = ev.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
  if (!typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey && (ev.key === 'f' || ev.key === 'F')) {
    ev.preventDefault();
    toggleFullscreen();
  }
});
document.addEventListener('fullscreenchange', () => {
  el.fullscreen.textContent = document.fullscreenElement ? 'Exit fullscreen' : 'Fullscreen';
});

/* ---------- start ---------- */

// Leaving the page ends WebRTC sessions at once (DELETE) instead of leaving the server to time
// them out, which would keep a WHIP publisher slot taken.
window.addEventListener('pagehide', () => {
  if (app.publish) app.publish.publisher.stop();
  if (app.output instanceof WhepPlayer) app.output.stop();
});

app.control.addEventListener('status', (ev) => onStatus(ev.detail.status));
app.control.addEventListener('status-error', () => {
  app.statusFailing = true;
  render();
});
app.control.addEventListener('state', render);

el.transport.value = opts.transport;
if (opts.publish !== 'auto') el.publishMethod.value = opts.publish;
el.showInput.checked = opts.showInput;
setSplit(opts.showInput);
onSourceChoice();
app.control.start();
startOutput();

// Refresh page-side numbers (FPS shown, WebRTC stats) between server status pushes.
setInterval(async () => {
  if (app.output instanceof WhepPlayer) {
    try {
      app.whepStats = await app.output.stats();
    } catch {
      app.whepStats = null;
    }
  }
  render();
}, 1000);
