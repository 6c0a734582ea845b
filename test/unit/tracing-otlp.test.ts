/**
 * weft's OTLP encoder (src/observability/tracing-otlp.ts): what it writes decodes, with
 * protobufjs and the OTLP field numbers, to the spans it was given (ids, times to the ns, every
 * kind of attribute value, events, status, flags), including the cases its shortcuts have to
 * get right (non-ASCII strings, lengths past one and two varint bytes, negative and large
 * integers); and it says what the OTel SDK's own serializer says for the same spans.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import protobuf from 'protobufjs';
import type { HrTime, SpanContext } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { SpanChunk, encodeRequest, encodeResource } from '../../src/observability/tracing-otlp.ts';
import type { SpanData } from '../../src/observability/tracing.ts';

const root = protobuf.loadSync(fileURLToPath(new URL('../fixtures/otlp/trace.proto', import.meta.url)));
const Request = root.lookupType('weft.test.otlp.ExportTraceServiceRequest');

type Decoded = {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string; value: Record<string, unknown> }> };
    scopeSpans: Array<{ scope: { name: string; version: string }; spans: Array<Record<string, unknown>> }>;
  }>;
};

function decode(bytes: Uint8Array): Decoded {
  return Request.toObject(Request.decode(bytes), { longs: String, bytes: String, defaults: true, oneofs: false }) as Decoded;
}

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SCOPE = { name: 'weft', version: '0.1.0' };
const RESOURCE = { 'service.name': 'orders', 'weft.node.id': 'node-1', pid: 42 };

function span(over: Partial<SpanData> = {}): SpanData {
  return {
    traceId: TID, spanId: '00f067aa0ba902b7', parentSpanId: 'a0b1c2d3e4f5a6b7', traceState: 'vendor=v1', name: 'POST /x', kind: 1,
    start: 1_700_000_000_123.4375, endTime: 1_700_000_000_125.5, attributes: { 'http.response.status_code': 200 }, events: null, status: 0, message: '',
    ...over,
  };
}

const hex = (b64: unknown): string => Buffer.from(b64 as string, 'base64').toString('hex');

describe('the OTLP encoder', () => {
  it('writes one ResourceSpans with the node\'s resource and scope, and each span as it was', () => {
    const long = 'x'.repeat(200);
    const spans = [
      span({
        attributes: { s: 'text', i: 7, big: 2 ** 40 + 3, neg: -5, d: 1.5, t: true, f: false, long, uni: 'héllo ✓' },
        events: [{ name: 'weft.retry', time: 1_700_000_000_124.25, attributes: { 'weft.retry.delay_ms': 25 } }, { name: 'bare', time: 1_700_000_000_124.5, attributes: null }],
        status: 2, message: 'the app answered 503',
      }),
      span({ spanId: '1111111111111111', parentSpanId: '', traceState: '', name: 'root', kind: 2, attributes: {} }),
    ];
    const out = decode(encodeRequest(encodeResource(RESOURCE, SCOPE), spans));
    expect(out.resourceSpans).toHaveLength(1);
    const rs = out.resourceSpans[0]!;
    expect(rs.resource.attributes).toEqual([
      { key: 'service.name', value: { stringValue: 'orders' } },
      { key: 'weft.node.id', value: { stringValue: 'node-1' } },
      { key: 'pid', value: { intValue: '42' } },
    ]);
    expect(rs.scopeSpans).toHaveLength(1);
    expect(rs.scopeSpans[0]!.scope).toEqual(SCOPE);
    const [a, b] = rs.scopeSpans[0]!.spans as [Record<string, unknown>, Record<string, unknown>];
    expect(hex(a['traceId'])).toBe(TID);
    expect(hex(a['spanId'])).toBe('00f067aa0ba902b7');
    expect(hex(a['parentSpanId'])).toBe('a0b1c2d3e4f5a6b7');
    expect(a).toMatchObject({ traceState: 'vendor=v1', name: 'POST /x', kind: 2, startTimeUnixNano: '1700000000123437500', endTimeUnixNano: '1700000000125500000', flags: 0x301 });
    expect(a['attributes']).toEqual([
      { key: 's', value: { stringValue: 'text' } },
      { key: 'i', value: { intValue: '7' } },
      { key: 'big', value: { intValue: String(2 ** 40 + 3) } },
      { key: 'neg', value: { intValue: '-5' } },
      { key: 'd', value: { doubleValue: 1.5 } },
      { key: 't', value: { boolValue: true } },
      { key: 'f', value: { boolValue: false } },
      { key: 'long', value: { stringValue: long } },
      { key: 'uni', value: { stringValue: 'héllo ✓' } },
    ]);
    expect(a['events']).toEqual([
      { name: 'weft.retry', timeUnixNano: '1700000000124250000', attributes: [{ key: 'weft.retry.delay_ms', value: { intValue: '25' } }] },
      { name: 'bare', timeUnixNano: '1700000000124500000', attributes: [] },
    ]);
    expect(a['status']).toEqual({ code: 2, message: 'the app answered 503' });
    expect(b).toMatchObject({ name: 'root', kind: 3, traceState: '', parentSpanId: '', attributes: [], flags: 0x101 });
    expect(b['status']).toBeNull();
  });

  it('gets lengths right past one and two varint bytes (a span over 16 KiB, a string over 127 bytes of non-ASCII)', () => {
    const huge = 'é'.repeat(10_000); // 20,000 bytes
    const spans = [span({ attributes: { huge } }), span({ name: 'ü'.repeat(70) }), span({ name: 'after' })];
    const got = decode(encodeRequest(encodeResource(RESOURCE, SCOPE), spans)).resourceSpans[0]!.scopeSpans[0]!.spans;
    expect(got.map((s) => s['name'])).toEqual(['POST /x', 'ü'.repeat(70), 'after']);
    expect(got[0]!['attributes']).toEqual([{ key: 'huge', value: { stringValue: huge } }]);
  });

  it('grows its buffer wherever it runs out (every first guess from 0 to past the whole request)', () => {
    const spans = [
      span({ attributes: { s: 'text', i: 7, neg: -5, d: 1.5, t: true, uni: 'héllo ✓', long: 'y'.repeat(150) }, events: [{ name: 'e', time: 1_700_000_000_124.25, attributes: { k: 1 } }], status: 2, message: 'm' }),
      span({ parentSpanId: '', traceState: '', name: 'second' }),
    ];
    const resource = encodeResource(RESOURCE, SCOPE);
    const whole = encodeRequest(resource, spans);
    for (let guess = 0; guess <= whole.length + 8; guess++) {
      expect(Buffer.from(encodeRequest(resource, spans, guess)).equals(Buffer.from(whole)), `first guess ${guess}`).toBe(true);
    }
    expect(decode(whole).resourceSpans[0]!.scopeSpans[0]!.spans.map((s) => s['name'])).toEqual(['POST /x', 'second']);
  });

  it('a chunk started for one resource is sent under a larger one (the node learnt its id meanwhile)', () => {
    const chunk = SpanChunk.for(encodeResource({ 'service.name': 'x' }, SCOPE));
    chunk.add(span());
    const bigger = { ...RESOURCE, 'host.name': 'h'.repeat(300) };
    const out = decode(chunk.request(encodeResource(bigger, SCOPE))).resourceSpans[0]!;
    expect(out.resource.attributes.map((a) => a.key)).toEqual(Object.keys(bigger));
    expect(out.scopeSpans[0]!.spans.map((s) => s['name'])).toEqual(['POST /x']);
  });

  it('pairs it has seen are copied as encoded, whatever their type, and past the cache\'s bound every value is still written right', () => {
    // the same key with values that a cache keyed loosely would mix up (200 / '200', true / 'true', 1 / 1.5)
    const mixed = [200, '200', true, 'true', 1, 1.5, -5, '', 'é'] as const;
    const spans = [...mixed, ...mixed].map((v) => span({ attributes: { 'k': v, 'http.response.status_code': 200 } }));
    // then far more distinct values than the cache keeps (a caller's paths), each seen twice
    for (let i = 0; i < 5000; i++) spans.push(span({ attributes: { 'url.path': `/p/${i}` } }), span({ attributes: { 'url.path': `/p/${i}` } }));
    const got = decode(encodeRequest(encodeResource(RESOURCE, SCOPE), spans)).resourceSpans[0]!.scopeSpans[0]!.spans;
    const anyOf = (v: string | number | boolean): Record<string, unknown> =>
      typeof v === 'string' ? { stringValue: v } : typeof v === 'boolean' ? { boolValue: v } : Number.isSafeInteger(v) ? { intValue: String(v) } : { doubleValue: v };
    for (let i = 0; i < 2 * mixed.length; i++) {
      const v = mixed[i % mixed.length] as string | number | boolean;
      expect(got[i]!['attributes'], `value ${String(v)} (${typeof v})`).toEqual([{ key: 'k', value: anyOf(v) }, { key: 'http.response.status_code', value: { intValue: '200' } }]);
    }
    const paths = got.slice(2 * mixed.length).map((s) => ((s['attributes'] as Array<{ value: { stringValue: string } }>)[0]!).value.stringValue);
    expect(paths).toEqual(Array.from({ length: 5000 }, (_, i) => [`/p/${i}`, `/p/${i}`]).flat());
  });

  it('a batch of thousands of spans, one after another', () => {
    const spans = Array.from({ length: 3000 }, (_, i) => span({ spanId: i.toString(16).padStart(16, '0'), attributes: { i } }));
    const got = decode(encodeRequest(encodeResource(RESOURCE, SCOPE), spans)).resourceSpans[0]!.scopeSpans[0]!.spans;
    expect(got).toHaveLength(3000);
    expect(got.map((s) => hex(s['spanId']))).toEqual(spans.map((s) => s.spanId));
    expect(got[2999]!['attributes']).toEqual([{ key: 'i', value: { intValue: '2999' } }]);
  });

  it('says what the OTel SDK\'s serializer says for the same spans', () => {
    const spans = [
      span({ attributes: { a: 'x', n: 3, d: 0.25, b: true }, events: [{ name: 'e', time: 1_700_000_000_124.000001, attributes: { k: 'v' } }], status: 2, message: 'm' }),
      span({ spanId: '2222222222222222', parentSpanId: '', traceState: '', kind: 0, start: 1_700_000_001_000, endTime: 1_700_000_001_000.001 }),
    ];
    const ours = decode(encodeRequest(encodeResource(RESOURCE, SCOPE), spans));
    const resource = resourceFromAttributes(RESOURCE);
    const theirs = decode(ProtobufTraceSerializer.serializeRequest(spans.map((d) => readable(d, resource))) as Uint8Array);
    // the SDK also writes flags of its own reckoning and a status for every span: compare the rest
    for (const out of [ours, theirs]) {
      for (const s of out.resourceSpans[0]!.scopeSpans[0]!.spans) {
        delete s['flags'];
        if (s['status'] !== null && (s['status'] as { code: number; message: string }).code === 0 && (s['status'] as { message: string }).message === '') s['status'] = null;
      }
    }
    expect(ours).toEqual(theirs);
  });
});

function hr(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.min(999_999_999, Math.round((ms - s * 1000) * 1e6))];
}

/** The span as the OTel SDK's ReadableSpan (as weft exported before it had its own encoder). */
function readable(d: SpanData, resource: ReturnType<typeof resourceFromAttributes>): ReadableSpan {
  const traceState = d.traceState === '' ? undefined : new TraceState(d.traceState);
  const context: SpanContext = { traceId: d.traceId, spanId: d.spanId, traceFlags: 1, traceState };
  return {
    name: d.name, kind: d.kind, spanContext: () => context,
    parentSpanContext: d.parentSpanId === '' ? undefined : { traceId: d.traceId, spanId: d.parentSpanId, traceFlags: 1, isRemote: true },
    startTime: hr(d.start), endTime: hr(d.endTime), duration: hr(d.endTime - d.start),
    status: d.message === '' ? { code: d.status } : { code: d.status, message: d.message },
    attributes: d.attributes, links: [], ended: true, resource, instrumentationScope: SCOPE,
    events: (d.events ?? []).map((e) => ({ name: e.name, time: hr(e.time), attributes: e.attributes ?? {}, droppedAttributesCount: 0 })),
    droppedAttributesCount: 0, droppedEventsCount: 0, droppedLinksCount: 0,
  } as unknown as ReadableSpan;
}
