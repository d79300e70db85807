// ws_server.mjs: a minimal RFC 6455 WebSocket server endpoint for node's http server, so
// that the protocol mock needs no npm package beyond playwright-core. Owns: the upgrade
// handshake, unmasking client frames (text, binary, ping, close; fragments joined), and
// sending unmasked server frames. Test-only code; runs on node's event loop.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_MESSAGE = 16 * 1024 * 1024;

export class WsConn extends EventEmitter {
  constructor(socket) {
    super();
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.frag = null; // {opcode, parts}
    this.open = true;
    socket.on('data', (d) => this.onData(d));
    socket.on('close', () => this.closed());
    socket.on('error', () => this.closed());
  }

  closed() {
    if (!this.open) return;
    this.open = false;
    this.emit('close');
  }

  onData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (len > MAX_MESSAGE) return this.destroy();
      const need = off + (masked ? 4 : 0) + len;
      if (b.length < need) return;
      let payload = Buffer.from(b.subarray(off + (masked ? 4 : 0), need));
      if (masked) {
        const mask = b.subarray(off, off + 4);
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      }
      this.buf = b.subarray(need);
      this.onFrame(fin, opcode, payload);
    }
  }

  onFrame(fin, opcode, payload) {
    if (opcode === 0x8) {
      this.sendFrame(0x8, payload.subarray(0, 2));
      this.socket.end();
      this.closed();
      return;
    }
    if (opcode === 0x9) return this.sendFrame(0xa, payload);
    if (opcode === 0xa) return;
    if (opcode === 0x0) {
      if (!this.frag) return this.destroy();
      this.frag.parts.push(payload);
    } else {
      this.frag = { opcode, parts: [payload] };
    }
    if (!fin) return;
    const msg = Buffer.concat(this.frag.parts);
    const op = this.frag.opcode;
    this.frag = null;
    if (op === 0x1) this.emit('text', msg.toString('utf8'));
    else if (op === 0x2) this.emit('binary', msg);
  }

  sendFrame(opcode, payload) {
    if (!this.open) return false;
    const n = payload.length;
    let head;
    if (n < 126) head = Buffer.from([0x80 | opcode, n]);
    else if (n < 65536) {
      head = Buffer.alloc(4);
      head[0] = 0x80 | opcode;
      head[1] = 126;
      head.writeUInt16BE(n, 2);
    } else {
      head = Buffer.alloc(10);
      head[0] = 0x80 | opcode;
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(n), 2);
    }
    this.socket.write(Buffer.concat([head, payload]));
    return true;
  }

  sendText(s) {
    return this.sendFrame(0x1, Buffer.from(s, 'utf8'));
  }

  sendBinary(b) {
    return this.sendFrame(0x2, Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }

  /** Bytes queued in the socket not yet written (for dropping frames to slow viewers). */
  get buffered() {
    return this.socket.writableLength;
  }

  destroy() {
    this.socket.destroy();
    this.closed();
  }

  close() {
    if (!this.open) return;
    this.sendFrame(0x8, Buffer.from([0x03, 0xe8]));
    this.socket.end();
    this.closed();
  }
}

/** Completes the handshake for an http 'upgrade' request; returns a WsConn or null. */
export function acceptUpgrade(req, socket) {
  const key = req.headers['sec-websocket-key'];
  if (!key || (req.headers.upgrade || '').toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    return null;
  }
  const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  socket.setNoDelay(true);
  return new WsConn(socket);
}
