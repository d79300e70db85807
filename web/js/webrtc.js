// webrtc.js: WHEP playback and WHIP publishing (RFC 9725 style: one HTTP POST of an SDP
// offer, 201 with the SDP answer and a Location for the session resource, DELETE to end).
// Owns: the RTCPeerConnection of each, waiting for ICE gathering (non-trickle: the offer
// carries all candidates), and reading receive/send statistics.
// Runs on the page's main thread.

const ICE_GATHER_TIMEOUT_MS = 2000;

function waitIceGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS); // use what we have
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** POSTs pc's offer to `endpoint`; applies the answer. Returns the session resource URL or null. */
export async function negotiate(pc, endpoint) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitIceGathering(pc);
  let res;
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
  } catch (e) {
    throw new Error(`Cannot reach ${endpoint} (${e.message}).`);
  }
  const text = await res.text();
  if (res.status !== 201 && res.status !== 200) {
    let why = text.trim();
    try {
      const j = JSON.parse(text);
      if (j && typeof j.message === 'string') why = j.message;
    } catch {
      /* plain text reason */
    }
    throw new Error(`The server refused the WebRTC session (${res.status}${why ? `: ${why.slice(0, 200)}` : ''}).`);
  }
  if (!text.startsWith('v=')) throw new Error('The server answered the WebRTC offer with something that is not SDP.');
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  const loc = res.headers.get('Location');
  return loc ? new URL(loc, new URL(endpoint, location.href)).href : null;
}

function preferH264(transceiver, kind) {
  // The server encodes/decodes H.264 without a transcode; put it first when the browser can.
  const caps = typeof RTCRtpReceiver !== 'undefined' && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities(kind);
  if (!caps || !transceiver.setCodecPreferences) return;
  const h264 = caps.codecs.filter((c) => /h264/i.test(c.mimeType));
  const rest = caps.codecs.filter((c) => !/h264/i.test(c.mimeType));
  if (h264.length) {
    try {
      transceiver.setCodecPreferences([...h264, ...rest]);
    } catch {
      /* keep the browser's order */
    }
  }
}

const CONNECT_TIMEOUT_MS = 10000;

/** Resolves when pc is connected; rejects in plain words when it fails or takes too long. */
export function waitConnected(pc, ms = CONNECT_TIMEOUT_MS) {
  if (pc.connectionState === 'connected') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err) => {
      pc.removeEventListener('connectionstatechange', check);
      clearTimeout(timer);
      if (err) reject(new Error(err));
      else resolve();
    };
    const check = () => {
      if (pc.connectionState === 'connected') done();
      else if (pc.connectionState === 'failed' || pc.connectionState === 'closed')
        done('The WebRTC connection failed (no network path between this browser and the server).');
    };
    const timer = setTimeout(() => done(`The WebRTC connection did not come up within ${ms / 1000} s.`), ms);
    pc.addEventListener('connectionstatechange', check);
  });
}

class Session extends EventTarget {
  constructor(endpoint) {
    super();
    this.endpoint = endpoint;
    this.pc = null;
    this.resource = null;
  }

  watchState() {
    this.pc.addEventListener('connectionstatechange', () => {
      const s = this.pc ? this.pc.connectionState : 'closed';
      this.dispatchEvent(new CustomEvent('state', { detail: { state: s } }));
    });
  }

  async stop() {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
    if (this.resource) {
      const r = this.resource;
      this.resource = null;
      try {
        await fetch(r, { method: 'DELETE', keepalive: true }); // keepalive: also on page exit
      } catch {
        /* the server times the session out */
      }
    }
  }
}

/** Plays the WHEP output into a <video>. */
export class WhepPlayer extends Session {
  constructor(video, endpoint = 'whep') {
    super(endpoint);
    this.video = video;
    this.last = null; // previous inbound-rtp report, for rates
  }

  async start() {
    this.pc = new RTCPeerConnection();
    this.watchState();
    const tr = this.pc.addTransceiver('video', { direction: 'recvonly' });
    preferH264(tr, 'video');
    this.pc.addEventListener('track', (ev) => {
      this.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      this.video.play().catch(() => {});
    });
    this.resource = await negotiate(this.pc, this.endpoint);
    await waitConnected(this.pc);
  }

  /** {fps, dropped, jitterMs} from the inbound video stream, or null before it flows. */
  async stats() {
    if (!this.pc) return null;
    const rep = await this.pc.getStats();
    let inbound = null;
    rep.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') inbound = r;
    });
    if (!inbound) return null;
    const jitterMs = inbound.jitterBufferEmittedCount
      ? (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount
      : null;
    return {
      fps: inbound.framesPerSecond || 0,
      frames: inbound.framesDecoded || 0,
      dropped: (inbound.framesDropped || 0) + (inbound.packetsLost || 0),
      jitterMs,
    };
  }
}

/** Publishes a MediaStreamTrack to the server over WHIP. */
export class WhipPublisher extends Session {
  constructor(track, endpoint = 'whip') {
    super(endpoint);
    this.track = track;
  }

  async start() {
    if (typeof RTCPeerConnection === 'undefined') throw new Error('WebRTC is not available in this browser.');
    this.pc = new RTCPeerConnection();
    this.watchState();
    const tr = this.pc.addTransceiver(this.track, { direction: 'sendonly' });
    preferH264(tr, 'video');
    this.resource = await negotiate(this.pc, this.endpoint);
    await waitConnected(this.pc);
  }

  async stats() {
    if (!this.pc) return null;
    const rep = await this.pc.getStats();
    let out = null;
    rep.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') out = r;
    });
    return out ? { fps: out.framesPerSecond || 0, frames: out.framesSent || 0 } : null;
  }
}
