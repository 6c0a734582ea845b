/**
 * Hand-written protobuf encoding of proto/weft/peer/v1/peer.proto.
 *
 * Why by hand: the messages are few and flat, grpc-js accepts any (de)serializer, and a
 * direct writer avoids building intermediate objects per call (grpc-js per call is the
 * largest cost on the path; see perf.md). test/unit/peer-codec.test.ts checks these bytes
 * against protobufjs reading the .proto file, both ways.
 *
 * Decoded `bytes` fields are views into the received buffer (no copy).
 * Pure module: no Node APIs beyond Buffer, safe to use on any thread.
 */

export interface CallHead {
  appId: string;
  namespace: string;
  method: string;
  verb: string;
  query: string;
  headers: string[];
  callerAppId: string;
  callerNamespace: string;
  /** Set on an actor call (both or neither); decoded as '' when absent. */
  actorType?: string;
  actorId?: string;
  /** W3C trace context of the caller node's attempt span (tracing on); decoded as '' when absent. */
  traceparent?: string;
  tracestate?: string;
}

export interface InvokeRequest {
  head: CallHead;
  body: Uint8Array;
}

export interface InvokeResponse {
  status: number;
  headers: string[];
  body: Uint8Array;
  bodyTicket: string;
}

export interface StreamFrame {
  call: CallHead | null;
  status: number;
  headers: string[];
  data: Uint8Array;
  /**
   * Request frames: the body is complete with this frame. A request stream that half-closes
   * without it was cut short (see peer.proto), never a body to hand the app.
   */
  end?: boolean;
  /**
   * The first request frame: the caller marks the body's end with `end`. Unset by callers
   * that predate `end`, whose half-close is the body's end (peer.proto).
   */
  endMarked?: boolean;
}

export interface FetchBodyRequest {
  ticket: string;
}

export interface MuxRequest {
  id: number;
  head: CallHead | null;
  body: Uint8Array;
  timeoutMs: number;
  cancel: boolean;
}

export interface MuxResponse {
  id: number;
  status: number;
  headers: string[];
  body: Uint8Array;
  bodyTicket: string;
  errorCode: string;
  errorMessage: string;
}

const EMPTY = new Uint8Array(0);
const WIRE_VARINT = 0;
const WIRE_LEN = 2;

// ---------- sizes ----------

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  return 5;
}

function strSize(s: string): number {
  if (s.length === 0) return 0;
  const len = Buffer.byteLength(s, 'utf8');
  return 1 + varintSize(len) + len;
}

function bytesSize(b: Uint8Array): number {
  return b.length === 0 ? 0 : 1 + varintSize(b.length) + b.length;
}

function repeatedStrSize(list: readonly string[]): number {
  let size = 0;
  for (const s of list) {
    const len = Buffer.byteLength(s, 'utf8');
    size += 1 + varintSize(len) + len;
  }
  return size;
}

function headSize(h: CallHead): number {
  return strSize(h.appId) + strSize(h.namespace) + strSize(h.method) + strSize(h.verb) + strSize(h.query)
    + repeatedStrSize(h.headers) + strSize(h.callerAppId) + strSize(h.callerNamespace)
    + strSize(h.actorType ?? '') + strSize(h.actorId ?? '') + strSize(h.traceparent ?? '') + strSize(h.tracestate ?? '');
}

function uintSize(n: number): number {
  return n === 0 ? 0 : 1 + varintSize(n);
}

// ---------- writer ----------

class Writer {
  readonly buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  varint(n: number): void {
    const buf = this.buf;
    while (n >= 0x80) {
      buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[this.pos++] = n;
  }

  tag(field: number, wire: number): void {
    this.buf[this.pos++] = (field << 3) | wire;
  }

  str(field: number, s: string): void {
    if (s.length === 0) return;
    this.rawStr(field, s);
  }

  rawStr(field: number, s: string): void {
    this.tag(field, WIRE_LEN);
    const len = Buffer.byteLength(s, 'utf8');
    this.varint(len);
    this.buf.write(s, this.pos, len, 'utf8');
    this.pos += len;
  }

  strs(field: number, list: readonly string[]): void {
    for (const s of list) this.rawStr(field, s);
  }

  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  uint(field: number, n: number): void {
    if (n === 0) return;
    this.tag(field, WIRE_VARINT);
    this.varint(n);
  }

  head(field: number, h: CallHead, size: number): void {
    this.tag(field, WIRE_LEN);
    this.varint(size);
    this.str(1, h.appId);
    this.str(2, h.namespace);
    this.str(3, h.method);
    this.str(4, h.verb);
    this.str(5, h.query);
    this.strs(6, h.headers);
    this.str(7, h.callerAppId);
    this.str(8, h.callerNamespace);
    this.str(9, h.actorType ?? '');
    this.str(10, h.actorId ?? '');
    this.str(11, h.traceparent ?? '');
    this.str(12, h.tracestate ?? '');
  }
}

export function encodeInvokeRequest(msg: InvokeRequest): Buffer {
  const hs = headSize(msg.head);
  const w = new Writer(1 + varintSize(hs) + hs + bytesSize(msg.body));
  w.head(1, msg.head, hs);
  w.bytes(2, msg.body);
  return w.buf;
}

export function encodeInvokeResponse(msg: InvokeResponse): Buffer {
  const w = new Writer(uintSize(msg.status) + repeatedStrSize(msg.headers) + bytesSize(msg.body) + strSize(msg.bodyTicket));
  w.uint(1, msg.status);
  w.strs(2, msg.headers);
  w.bytes(3, msg.body);
  w.str(4, msg.bodyTicket);
  return w.buf;
}

export function encodeStreamFrame(msg: StreamFrame): Buffer {
  const hs = msg.call === null ? -1 : headSize(msg.call);
  const w = new Writer((hs < 0 ? 0 : 1 + varintSize(hs) + hs) + uintSize(msg.status) + repeatedStrSize(msg.headers) + bytesSize(msg.data) + (msg.end === true ? 2 : 0) + (msg.endMarked === true ? 2 : 0));
  if (msg.call !== null) w.head(1, msg.call, hs);
  w.uint(2, msg.status);
  w.strs(3, msg.headers);
  w.bytes(4, msg.data);
  if (msg.end === true) w.uint(5, 1);
  if (msg.endMarked === true) w.uint(6, 1);
  return w.buf;
}

export function encodeMuxRequest(msg: MuxRequest): Buffer {
  const hs = msg.head === null ? -1 : headSize(msg.head);
  const w = new Writer(uintSize(msg.id) + (hs < 0 ? 0 : 1 + varintSize(hs) + hs) + bytesSize(msg.body) + uintSize(msg.timeoutMs) + (msg.cancel ? 2 : 0));
  w.uint(1, msg.id);
  if (msg.head !== null) w.head(2, msg.head, hs);
  w.bytes(3, msg.body);
  w.uint(4, msg.timeoutMs);
  w.uint(5, msg.cancel ? 1 : 0);
  return w.buf;
}

export function encodeMuxResponse(msg: MuxResponse): Buffer {
  const w = new Writer(uintSize(msg.id) + uintSize(msg.status) + repeatedStrSize(msg.headers) + bytesSize(msg.body)
    + strSize(msg.bodyTicket) + strSize(msg.errorCode) + strSize(msg.errorMessage));
  w.uint(1, msg.id);
  w.uint(2, msg.status);
  w.strs(3, msg.headers);
  w.bytes(4, msg.body);
  w.str(5, msg.bodyTicket);
  w.str(6, msg.errorCode);
  w.str(7, msg.errorMessage);
  return w.buf;
}

export function encodeFetchBodyRequest(msg: FetchBodyRequest): Buffer {
  const w = new Writer(strSize(msg.ticket));
  w.str(1, msg.ticket);
  return w.buf;
}

// ---------- reader ----------

export class DecodeError extends Error {
  override name = 'DecodeError';
}

class Reader {
  readonly buf: Buffer;
  pos: number;
  readonly end: number;

  constructor(buf: Buffer, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new DecodeError('truncated varint');
      const b = this.buf[this.pos++] as number;
      if (shift < 28) result |= (b & 0x7f) << shift;
      else result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
      if (shift > 63) throw new DecodeError('varint too long');
    }
  }

  len(): number {
    const n = this.varint();
    if (this.pos + n > this.end) throw new DecodeError('length past the end of the message');
    return n;
  }

  str(): string {
    const n = this.len();
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  bytes(): Uint8Array {
    const n = this.len();
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0: this.varint(); return;
      case 1: this.pos += 8; break;
      case 2: {
        // read the length first: `this.pos += this.len()` would add to the old position
        const n = this.len();
        this.pos += n;
        return;
      }
      case 5: this.pos += 4; break;
      default: throw new DecodeError(`unsupported wire type ${wire}`);
    }
    if (this.pos > this.end) throw new DecodeError('truncated field');
  }
}

function readHead(r: Reader): CallHead {
  const n = r.len();
  const sub = new Reader(r.buf, r.pos, r.pos + n);
  r.pos += n;
  const h: CallHead = { appId: '', namespace: '', method: '', verb: '', query: '', headers: [], callerAppId: '', callerNamespace: '', actorType: '', actorId: '', traceparent: '', tracestate: '' };
  while (sub.pos < sub.end) {
    const tag = sub.varint();
    switch (tag) {
      case (1 << 3) | WIRE_LEN: h.appId = sub.str(); break;
      case (2 << 3) | WIRE_LEN: h.namespace = sub.str(); break;
      case (3 << 3) | WIRE_LEN: h.method = sub.str(); break;
      case (4 << 3) | WIRE_LEN: h.verb = sub.str(); break;
      case (5 << 3) | WIRE_LEN: h.query = sub.str(); break;
      case (6 << 3) | WIRE_LEN: h.headers.push(sub.str()); break;
      case (7 << 3) | WIRE_LEN: h.callerAppId = sub.str(); break;
      case (8 << 3) | WIRE_LEN: h.callerNamespace = sub.str(); break;
      case (9 << 3) | WIRE_LEN: h.actorType = sub.str(); break;
      case (10 << 3) | WIRE_LEN: h.actorId = sub.str(); break;
      case (11 << 3) | WIRE_LEN: h.traceparent = sub.str(); break;
      case (12 << 3) | WIRE_LEN: h.tracestate = sub.str(); break;
      default: sub.skip(tag & 7);
    }
  }
  return h;
}

export function decodeInvokeRequest(buf: Buffer): InvokeRequest {
  const r = new Reader(buf);
  let head: CallHead | null = null;
  let body: Uint8Array = EMPTY;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | WIRE_LEN)) head = readHead(r);
    else if (tag === ((2 << 3) | WIRE_LEN)) body = r.bytes();
    else r.skip(tag & 7);
  }
  if (head === null) throw new DecodeError('InvokeRequest without head');
  return { head, body };
}

export function decodeInvokeResponse(buf: Buffer): InvokeResponse {
  const r = new Reader(buf);
  const msg: InvokeResponse = { status: 0, headers: [], body: EMPTY, bodyTicket: '' };
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | WIRE_VARINT: msg.status = r.varint(); break;
      case (2 << 3) | WIRE_LEN: msg.headers.push(r.str()); break;
      case (3 << 3) | WIRE_LEN: msg.body = r.bytes(); break;
      case (4 << 3) | WIRE_LEN: msg.bodyTicket = r.str(); break;
      default: r.skip(tag & 7);
    }
  }
  return msg;
}

export function decodeStreamFrame(buf: Buffer): StreamFrame {
  const r = new Reader(buf);
  const msg: StreamFrame = { call: null, status: 0, headers: [], data: EMPTY };
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | WIRE_LEN: msg.call = readHead(r); break;
      case (2 << 3) | WIRE_VARINT: msg.status = r.varint(); break;
      case (3 << 3) | WIRE_LEN: msg.headers.push(r.str()); break;
      case (4 << 3) | WIRE_LEN: msg.data = r.bytes(); break;
      case (5 << 3) | WIRE_VARINT: if (r.varint() !== 0) msg.end = true; break;
      case (6 << 3) | WIRE_VARINT: if (r.varint() !== 0) msg.endMarked = true; break;
      default: r.skip(tag & 7);
    }
  }
  return msg;
}

export function decodeMuxRequest(buf: Buffer): MuxRequest {
  const r = new Reader(buf);
  const msg: MuxRequest = { id: 0, head: null, body: EMPTY, timeoutMs: 0, cancel: false };
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | WIRE_VARINT: msg.id = r.varint(); break;
      case (2 << 3) | WIRE_LEN: msg.head = readHead(r); break;
      case (3 << 3) | WIRE_LEN: msg.body = r.bytes(); break;
      case (4 << 3) | WIRE_VARINT: msg.timeoutMs = r.varint(); break;
      case (5 << 3) | WIRE_VARINT: msg.cancel = r.varint() !== 0; break;
      default: r.skip(tag & 7);
    }
  }
  return msg;
}

export function decodeMuxResponse(buf: Buffer): MuxResponse {
  const r = new Reader(buf);
  const msg: MuxResponse = { id: 0, status: 0, headers: [], body: EMPTY, bodyTicket: '', errorCode: '', errorMessage: '' };
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | WIRE_VARINT: msg.id = r.varint(); break;
      case (2 << 3) | WIRE_VARINT: msg.status = r.varint(); break;
      case (3 << 3) | WIRE_LEN: msg.headers.push(r.str()); break;
      case (4 << 3) | WIRE_LEN: msg.body = r.bytes(); break;
      case (5 << 3) | WIRE_LEN: msg.bodyTicket = r.str(); break;
      case (6 << 3) | WIRE_LEN: msg.errorCode = r.str(); break;
      case (7 << 3) | WIRE_LEN: msg.errorMessage = r.str(); break;
      default: r.skip(tag & 7);
    }
  }
  return msg;
}

export function decodeFetchBodyRequest(buf: Buffer): FetchBodyRequest {
  const r = new Reader(buf);
  const msg: FetchBodyRequest = { ticket: '' };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === ((1 << 3) | WIRE_LEN)) msg.ticket = r.str();
    else r.skip(tag & 7);
  }
  return msg;
}

/** gRPC method paths of the Peer service. */
export const PEER_SERVICE = 'weft.peer.v1.Peer';
export const PeerMethods = {
  invoke: `/${PEER_SERVICE}/Invoke`,
  invokeStream: `/${PEER_SERVICE}/InvokeStream`,
  fetchBody: `/${PEER_SERVICE}/FetchBody`,
  mux: `/${PEER_SERVICE}/Mux`,
  proxy: `/${PEER_SERVICE}/Proxy`,
} as const;

/** Trailer carrying weft's stable error code on a status weft decided. */
export const ERROR_CODE_KEY = 'weft-code';
/** Trailer naming the app id the error is about. */
export const ERROR_APP_KEY = 'weft-app';
