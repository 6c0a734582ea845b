/**
 * OTLP's protobuf (`ExportTraceServiceRequest`, opentelemetry/proto/trace/v1) written straight
 * from weft's finished spans (`SpanData`), for the OTel exporters' transports
 * (tracing-export.ts). The OTel exporter's own path (each span a ReadableSpan, then a
 * transformer object, then protobufjs) was ~85% of what tracing cost a node at 100% sampling.
 * Here each span is written once, as it ends, into the chunk of the export it will go in:
 *
 * - the resource and the instrumentation scope are encoded once per resource (they never
 *   change), and the chunk's one ResourceSpans/ScopeSpans head is written in front of its
 *   spans when it is sent (room for it is kept at the start: nothing is copied);
 * - ids go from hex to bytes, short ASCII strings byte by byte, times from fractional epoch ms
 *   to fixed64 nanoseconds in two 32-bit halves (no BigInt, no [s, ns] pairs);
 * - a nested message's length is written after the message: one byte is kept for it, and in
 *   the rare case it needs more the message is moved up (a span: two bytes are kept).
 *
 * Field numbers as in opentelemetry-proto (trace.proto, common.proto, resource.proto). Zero
 * values are left out, as protobuf allows. Numbers: a safe integer is an `int_value`, any other
 * number a `double_value` (as the OTel JS transformer does).
 */
import type { SpanAttributes, SpanData, SpanEventData } from '../../workers/protocol.ts';

/** One node's resource and scope, encoded once. */
export interface EncodedResource {
  /** `Resource` message bytes. */
  readonly resource: Uint8Array;
  /** `InstrumentationScope` message bytes. */
  readonly scope: Uint8Array;
}

/** What one export sends: the request's bytes, and how many spans it carries. */
export interface SpanExportBatch {
  readonly bytes: Uint8Array;
  readonly count: number;
}

// hex digit → value, for ids
const HEX = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[97 + i] = 10 + i;
  HEX[65 + i] = 10 + i;
}

const TWO32 = 4294967296;

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** A growing buffer and the protobuf wire types weft's spans need. */
class Writer {
  buf: Buffer;
  pos: number;

  constructor(size: number, start = 0) {
    this.buf = Buffer.allocUnsafe(size);
    this.pos = start;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + 1024));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(b: number): void {
    if (this.pos === this.buf.length) this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** A non-negative integer below 2^32. */
  varint32(n: number): void {
    this.ensure(5);
    const buf = this.buf;
    let p = this.pos;
    while (n >= 0x80) {
      buf[p++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[p++] = n;
    this.pos = p;
  }

  /** An int64 (a safe integer; negative ones take ten bytes, two's complement). */
  int64(n: number): void {
    if (n >= 0 && n < TWO32) return this.varint32(n);
    this.ensure(10);
    let lo: number;
    let hi: number;
    if (n >= 0) {
      lo = n % TWO32;
      hi = Math.floor(n / TWO32);
    } else {
      const m = -n;
      lo = m % TWO32;
      hi = Math.floor(m / TWO32);
      // two's complement of (hi, lo)
      lo = (~lo + 1) >>> 0;
      hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    }
    const buf = this.buf;
    let p = this.pos;
    while (hi > 0 || lo >= 0x80) {
      buf[p++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    buf[p++] = lo;
    this.pos = p;
  }

  /** Fractional ms since the epoch as fixed64 ns since the epoch. */
  fixed64Ms(ms: number): void {
    this.ensure(8);
    const s = Math.floor(ms / 1000);
    const ns = Math.min(999_999_999, Math.round((ms - s * 1000) * 1e6));
    // s * 1e9 + ns in two 32-bit halves, every step exact in a double:
    // s = sh * 2^16 + sl, so the value is (sh * 1e9) * 2^16 + (sl * 1e9 + ns)
    const sh = Math.floor(s / 65536);
    const low = (s - sh * 65536) * 1e9 + ns; // < 2^47
    const b = sh * 1e9; // < 2^46
    const bHi = Math.floor(b / 65536);
    const sum = (b - bHi * 65536) * 65536 + low; // < 2^48
    const carry = Math.floor(sum / TWO32);
    const buf = this.buf;
    buf.writeUInt32LE(sum - carry * TWO32, this.pos);
    buf.writeUInt32LE(bHi + carry, this.pos + 4);
    this.pos += 8;
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** A length-delimited string (its tag already written). */
  string(s: string): void {
    const n = s.length;
    if (n < 0x80) {
      // ASCII (the usual case) goes byte by byte behind a one-byte length
      this.ensure(n + 1);
      const buf = this.buf;
      let p = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = p;
        return;
      }
    }
    const len = Buffer.byteLength(s);
    this.varint32(len);
    this.ensure(len);
    this.buf.write(s, this.pos, len, 'utf8');
    this.pos += len;
  }

  /** Hex (an id) as its bytes, length-delimited (its tag already written). */
  hexBytes(hex: string): void {
    const n = hex.length >>> 1;
    this.ensure(n + 1);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = n;
    for (let i = 0; i < hex.length; i += 2) buf[p++] = (HEX[hex.charCodeAt(i) & 0x7f] as number) * 16 + (HEX[hex.charCodeAt(i + 1) & 0x7f] as number);
    this.pos = p;
  }

  /** An encoded message in field `tag` (a one-byte tag). */
  message(tag: number, bytes: Uint8Array): void {
    this.byte(tag);
    this.varint32(bytes.length);
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** Starts a nested message (its tag already written): keeps `room` bytes for its length. */
  begin(room = 1): number {
    this.ensure(room);
    const at = this.pos;
    this.pos += room;
    return at;
  }

  /** Ends the message `begin` started at `at`: writes its length, moving it if the room kept was not right. */
  end(at: number, room = 1): void {
    const len = this.pos - at - room;
    const size = varintSize(len);
    if (size !== room) {
      this.ensure(size - room);
      this.buf.copyWithin(at + size, at + room, this.pos);
      this.pos += size - room;
    }
    let p = at;
    let n = len;
    while (n >= 0x80) {
      this.buf[p++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[p] = n;
  }
}

// ---------------------------------------------------------------- messages

/** AnyValue of a string, number or boolean. */
function anyValue(w: Writer, v: string | number | boolean): void {
  if (typeof v === 'string') {
    w.byte(0x0a); // string_value = 1
    w.string(v);
  } else if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) {
      w.byte(0x18); // int_value = 3
      w.int64(v);
    } else {
      w.byte(0x21); // double_value = 4
      w.double(v);
    }
  } else {
    w.byte(0x10); // bool_value = 2
    w.byte(v ? 1 : 0);
  }
}

/** A KeyValue message's bytes (its key and value fields, without its own tag and length). */
function keyValue(w: Writer, key: string, v: string | number | boolean): void {
  w.byte(0x0a); // key = 1
  w.string(key);
  w.byte(0x12); // value = 2
  const any = w.begin();
  anyValue(w, v);
  w.end(any);
}

/**
 * KeyValues already encoded, by key and then value. A node's spans repeat the same few pairs
 * (the app ids, the method, the route, addresses, the status), so each pair is encoded once and
 * copied after. Values can come from callers (a path, a method name), so the cache is bounded:
 * long values are never kept, and a full cache is emptied and starts again rather than grown.
 */
const KV_CACHE_MAX = 2048;
const KV_VALUE_MAX = 128;
let kvCache = new Map<string, Map<string | number | boolean, Uint8Array>>();
let kvCached = 0;
const kvScratch = new Writer(512);

/** The KeyValue of `key` and `v` from the cache, encoded and kept if it can be; null if it is not to be kept. */
function cachedKeyValue(key: string, v: string | number | boolean): Uint8Array | null {
  // what is never kept is not looked up either (a long value would be hashed for nothing)
  if (key.length > KV_VALUE_MAX || (typeof v === 'string' ? v.length > KV_VALUE_MAX : typeof v === 'number' && !Number.isSafeInteger(v))) return null;
  let byValue = kvCache.get(key);
  const bytes = byValue?.get(v);
  if (bytes !== undefined) return bytes;
  if (kvCached >= KV_CACHE_MAX) {
    kvCache = new Map();
    kvCached = 0;
    byValue = undefined;
  }
  if (byValue === undefined) kvCache.set(key, (byValue = new Map()));
  kvScratch.pos = 0;
  keyValue(kvScratch, key, v);
  const encoded = Uint8Array.prototype.slice.call(kvScratch.buf, 0, kvScratch.pos) as Uint8Array;
  byValue.set(v, encoded);
  kvCached++;
  return encoded;
}

/** Each attribute as a KeyValue in field `tag`. */
function keyValues(w: Writer, tag: number, attributes: SpanAttributes): void {
  for (const key in attributes) {
    const v = attributes[key];
    if (v === undefined) continue;
    const cached = cachedKeyValue(key, v);
    if (cached !== null) {
      w.message(tag, cached);
      continue;
    }
    w.byte(tag);
    const kv = w.begin();
    keyValue(w, key, v);
    w.end(kv);
  }
}

function event(w: Writer, e: SpanEventData): void {
  w.byte(0x5a); // events = 11
  const at = w.begin();
  w.byte(0x09); // time_unix_nano = 1
  w.fixed64Ms(e.time);
  w.byte(0x12); // name = 2
  w.string(e.name);
  if (e.attributes !== null) keyValues(w, 0x1a, e.attributes); // attributes = 3
  w.end(at);
}

/** SpanFlags: the W3C flags (sampled) and whether the parent is remote (a SERVER span's is: it came over the wire). */
const FLAGS_LOCAL_PARENT = 0x101;
const FLAGS_REMOTE_PARENT = 0x301;

function span(w: Writer, d: SpanData): void {
  w.byte(0x12); // ScopeSpans.spans = 2
  const at = w.begin(2);
  w.byte(0x0a); // trace_id = 1
  w.hexBytes(d.traceId);
  w.byte(0x12); // span_id = 2
  w.hexBytes(d.spanId);
  if (d.traceState !== '') {
    w.byte(0x1a); // trace_state = 3
    w.string(d.traceState);
  }
  if (d.parentSpanId !== '') {
    w.byte(0x22); // parent_span_id = 4
    w.hexBytes(d.parentSpanId);
  }
  w.byte(0x2a); // name = 5
  w.string(d.name);
  w.byte(0x30); // kind = 6 (OTLP's numbers are the API's plus one)
  w.byte(d.kind + 1);
  w.byte(0x39); // start_time_unix_nano = 7
  w.fixed64Ms(d.start);
  w.byte(0x41); // end_time_unix_nano = 8
  w.fixed64Ms(d.endTime);
  keyValues(w, 0x4a, d.attributes); // attributes = 9
  if (d.events !== null) for (const e of d.events) event(w, e);
  if (d.status !== 0 || d.message !== '') {
    w.byte(0x7a); // status = 15
    const st = w.begin();
    if (d.message !== '') {
      w.byte(0x12); // message = 2
      w.string(d.message);
    }
    if (d.status !== 0) {
      w.byte(0x18); // code = 3
      w.byte(d.status);
    }
    w.end(st);
  }
  w.ensure(6);
  w.byte(0x85); // flags = 16, fixed32
  w.byte(0x01);
  w.buf.writeUInt32LE(d.parentSpanId !== '' && d.kind === 1 ? FLAGS_REMOTE_PARENT : FLAGS_LOCAL_PARENT, w.pos);
  w.pos += 4;
  w.end(at, 2);
}

/** Encodes a node's resource (its attributes) and the instrumentation scope, once. */
export function encodeResource(attributes: SpanAttributes, scope: { readonly name: string; readonly version: string }): EncodedResource {
  const r = new Writer(1024);
  keyValues(r, 0x0a, attributes); // Resource.attributes = 1
  const s = new Writer(128);
  s.byte(0x0a); // name = 1
  s.string(scope.name);
  s.byte(0x12); // version = 2
  s.string(scope.version);
  return { resource: r.buf.subarray(0, r.pos), scope: s.buf.subarray(0, s.pos) };
}

/** Room kept in front of a chunk's spans for the request's head (the resource and scope, and three tags and lengths). */
function headRoom(resource: EncodedResource): number {
  return 4 * 6 + resource.resource.length + resource.scope.length;
}

/**
 * Spans encoded as they finish, up to one export's worth: the queue holds these bytes, not the
 * span objects (which so die young, and cost the garbage collector next to nothing).
 * `request()` writes the head in the room kept in front and returns the whole request.
 */
export class SpanChunk {
  private readonly w: Writer;
  private readonly room: number;
  /** Spans in the chunk. */
  count = 0;

  /** `room`: what `headRoom` says for the resource the chunk is meant for; `size`: the first buffer's (it grows). */
  constructor(room: number, size = 16 * 1024) {
    this.room = room;
    this.w = new Writer(room + size, room);
  }

  static for(resource: EncodedResource, size?: number): SpanChunk {
    return new SpanChunk(headRoom(resource), size);
  }

  /** Adds a span; false (nothing added) if it could not be encoded. */
  add(d: SpanData): boolean {
    const at = this.w.pos;
    try {
      span(this.w, d);
    } catch {
      this.w.pos = at;
      return false;
    }
    this.count++;
    return true;
  }

  /** The spans' bytes alone, in a buffer of their own (what a worker sends the main thread). */
  spans(): Uint8Array {
    const out = new Uint8Array(this.w.pos - this.room);
    out.set(this.w.buf.subarray(this.room, this.w.pos));
    return out;
  }

  /** Appends `count` spans another chunk encoded (`spans()`). */
  append(bytes: Uint8Array, count: number): void {
    this.w.ensure(bytes.length);
    this.w.buf.set(bytes, this.w.pos);
    this.w.pos += bytes.length;
    this.count += count;
  }

  /** Bytes the spans take so far. */
  get bytes(): number {
    return this.w.pos - this.room;
  }

  /** The `ExportTraceServiceRequest`: one ResourceSpans (the node's), one ScopeSpans, the spans. */
  request(encoded: EncodedResource): Uint8Array {
    const { resource, scope } = encoded;
    const w = this.w;
    const spansLen = w.pos - this.room;
    // ScopeSpans { scope = 1; spans = 2 (already written) }
    const scopeSpansLen = 1 + varintSize(scope.length) + scope.length + spansLen;
    // ResourceSpans { resource = 1; scope_spans = 2 }
    const resourceSpansLen = 1 + varintSize(resource.length) + resource.length + 1 + varintSize(scopeSpansLen) + scopeSpansLen;
    const prefix = 1 + varintSize(resourceSpansLen) + (resourceSpansLen - spansLen);
    // (a resource that grew after the chunk was started does not fit the room kept: a copy)
    const p = new Writer(0);
    if (prefix <= this.room) {
      p.buf = w.buf;
      p.pos = this.room - prefix;
    } else {
      p.buf = Buffer.allocUnsafe(prefix + spansLen + 8); // (slack: the head's writes check for five bytes of room)
      w.buf.copy(p.buf, prefix, this.room, w.pos);
    }
    const start = p.pos;
    p.byte(0x0a); // ExportTraceServiceRequest.resource_spans = 1
    p.varint32(resourceSpansLen);
    p.message(0x0a, resource); // ResourceSpans.resource = 1
    p.byte(0x12); // ResourceSpans.scope_spans = 2
    p.varint32(scopeSpansLen);
    p.message(0x0a, scope); // ScopeSpans.scope = 1
    return p.buf.subarray(start, start + prefix + spansLen);
  }
}

/** One `ExportTraceServiceRequest` for `spans` at once (`size`: the first buffer's, for tests of its growth). */
export function encodeRequest(resource: EncodedResource, spans: readonly SpanData[], size?: number): Uint8Array {
  const chunk = SpanChunk.for(resource, size);
  for (const d of spans) if (!chunk.add(d)) throw new Error(`span ${d.spanId} could not be encoded`);
  return chunk.request(resource);
}
