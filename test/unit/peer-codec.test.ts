/**
 * The hand-written codec against the .proto file, read by @grpc/proto-loader (protobufjs):
 * bytes we write decode with protobufjs, and bytes protobufjs writes decode with ours.
 */
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { loadSync } from '@grpc/proto-loader';
import {
  decodeFetchBodyRequest, decodeInvokeRequest, decodeInvokeResponse, decodeMuxRequest, decodeMuxResponse, decodeStreamFrame,
  encodeFetchBodyRequest, encodeInvokeRequest, encodeInvokeResponse, encodeMuxRequest, encodeMuxResponse, encodeStreamFrame,
  PeerMethods, type CallHead,
} from '../../src/peer/codec.ts';

const PROTO = fileURLToPath(new URL('../../proto/weft/peer/v1/peer.proto', import.meta.url));
const pkg = loadSync(PROTO, { keepCase: false, longs: Number, defaults: true, bytes: Buffer });
const service = pkg['weft.peer.v1.Peer'] as Record<string, { path: string; requestSerialize: (v: unknown) => Buffer; requestDeserialize: (b: Buffer) => unknown; responseSerialize: (v: unknown) => Buffer; responseDeserialize: (b: Buffer) => unknown }>;
const invoke = service['Invoke']!;
const stream = service['InvokeStream']!;
const fetch = service['FetchBody']!;
const mux = service['Mux']!;

const head: CallHead = {
  appId: 'orders', namespace: 'shop', method: 'neworder/ä/ü', verb: 'POST', query: 'a=1&b=ünïcode',
  headers: ['content-type', 'application/json', 'x-empty', '', 'x-emoji', '🦀'],
  callerAppId: 'front', callerNamespace: 'default', actorType: '', actorId: '', traceparent: '', tracestate: '',
};
const actorHead: CallHead = { ...head, method: 'deposit', verb: 'PUT', query: '', actorType: 'Bänk', actorId: 'acct-42' };

describe('peer codec', () => {
  it('uses the paths of the .proto service', () => {
    expect(invoke.path).toBe(PeerMethods.invoke);
    expect(stream.path).toBe(PeerMethods.invokeStream);
    expect(fetch.path).toBe(PeerMethods.fetchBody);
    expect(mux.path).toBe(PeerMethods.mux);
    expect((pkg['weft.peer.v1.CallHead'] as { type?: unknown }).type).toBeDefined();
  });

  it('an actor call head (actor_type, actor_id) both ways, in Invoke and Mux', () => {
    const body = Buffer.from('{"amount":5}');
    expect(invoke.requestDeserialize(encodeInvokeRequest({ head: actorHead, body }))).toEqual({ head: actorHead, body });
    expect(decodeInvokeRequest(invoke.requestSerialize({ head: actorHead, body })).head).toEqual(actorHead);
    const req = { id: 3, head: actorHead, body, timeoutMs: 1000, cancel: false };
    expect(mux.requestDeserialize(encodeMuxRequest(req))).toMatchObject({ id: 3, head: actorHead });
    expect(decodeMuxRequest(mux.requestSerialize(req)).head).toEqual(actorHead);
  });

  it('a head carrying W3C trace context (traceparent, tracestate) both ways, in Invoke and Mux', () => {
    const traced: CallHead = { ...head, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=x,other=y' };
    const body = Buffer.from('x');
    expect(invoke.requestDeserialize(encodeInvokeRequest({ head: traced, body }))).toEqual({ head: traced, body });
    expect(decodeInvokeRequest(invoke.requestSerialize({ head: traced, body })).head).toEqual(traced);
    const req = { id: 9, head: traced, body, timeoutMs: 10, cancel: false };
    expect(decodeMuxRequest(mux.requestSerialize(req)).head).toEqual(traced);
    expect(mux.requestDeserialize(encodeMuxRequest(req))).toMatchObject({ head: traced });
  });

  it.each([0, 1, 127, 128, 300, 70_000])('InvokeRequest with a %i-byte body, both ways', (size) => {
    const body = Buffer.alloc(size, 0xab);
    const ours = encodeInvokeRequest({ head, body });
    expect(invoke.requestDeserialize(ours)).toEqual({ head, body });
    const theirs = invoke.requestSerialize({ head, body });
    const back = decodeInvokeRequest(theirs);
    expect(back.head).toEqual(head);
    expect(Buffer.from(back.body)).toEqual(body);
  });

  it('InvokeResponse with status, headers, body and ticket, both ways', () => {
    const msg = { status: 503, headers: ['a', '1', 'set-cookie', 'x', 'set-cookie', 'y'], body: Buffer.from('hello'), bodyTicket: 't-1' };
    expect(invoke.responseDeserialize(encodeInvokeResponse(msg))).toEqual(msg);
    const back = decodeInvokeResponse(invoke.responseSerialize(msg));
    expect({ ...back, body: Buffer.from(back.body) }).toEqual(msg);
    const empty = decodeInvokeResponse(encodeInvokeResponse({ status: 0, headers: [], body: new Uint8Array(0), bodyTicket: '' }));
    expect(empty).toEqual({ status: 0, headers: [], body: new Uint8Array(0), bodyTicket: '' });
  });

  it('StreamFrame with and without the call head, both ways', () => {
    const first = { call: head, status: 0, headers: [], data: Buffer.from([1, 2, 3]) };
    expect(stream.requestDeserialize(encodeStreamFrame(first))).toMatchObject({ call: head, data: Buffer.from([1, 2, 3]) });
    const reply = { call: null, status: 200, headers: ['x', 'y'], data: Buffer.alloc(5000, 1) };
    const theirs = stream.responseSerialize(reply);
    const back = decodeStreamFrame(theirs);
    expect(back.call).toBeNull();
    expect(back.status).toBe(200);
    expect(back.headers).toEqual(['x', 'y']);
    expect(Buffer.from(back.data)).toEqual(reply.data);
  });

  it('StreamFrame `end` (the request body is complete) both ways, and absent when unset', () => {
    const last = { call: null, status: 0, headers: [], data: Buffer.from('tail'), end: true };
    expect(stream.requestDeserialize(encodeStreamFrame(last))).toMatchObject({ end: true, data: Buffer.from('tail') });
    expect(decodeStreamFrame(stream.requestSerialize(last)).end).toBe(true);
    expect(decodeStreamFrame(stream.requestSerialize({ ...last, data: Buffer.alloc(0) })).end).toBe(true);
    expect(decodeStreamFrame(encodeStreamFrame({ ...last, end: false })).end).toBeUndefined();
    expect((stream.requestDeserialize(encodeStreamFrame({ call: null, status: 0, headers: [], data: Buffer.from('x') })) as { end: boolean }).end).toBe(false);
  });

  it('StreamFrame `endMarked` (the first frame: this caller marks the end) both ways, and absent when unset', () => {
    const first = { call: null, status: 0, headers: [], data: Buffer.from('head'), endMarked: true };
    expect(stream.requestDeserialize(encodeStreamFrame(first))).toMatchObject({ endMarked: true, data: Buffer.from('head') });
    expect(decodeStreamFrame(stream.requestSerialize(first)).endMarked).toBe(true);
    expect(decodeStreamFrame(encodeStreamFrame({ ...first, endMarked: false })).endMarked).toBeUndefined();
  });

  it('Mux frames both ways: a call, a cancel, an answer, an error', () => {
    const req = { id: 4_000_000_000 >>> 0, head, body: Buffer.from('abc'), timeoutMs: 59_999, cancel: false };
    expect(mux.requestDeserialize(encodeMuxRequest(req))).toEqual(req);
    const back = decodeMuxRequest(mux.requestSerialize(req));
    expect({ ...back, body: Buffer.from(back.body) }).toEqual(req);
    const cancel = { id: 7, head: null, body: new Uint8Array(0), timeoutMs: 0, cancel: true };
    const c = decodeMuxRequest(mux.requestSerialize(cancel));
    expect({ ...c, body: Buffer.from(c.body) }).toEqual({ ...cancel, body: Buffer.alloc(0) });
    expect(mux.requestDeserialize(encodeMuxRequest(cancel))).toMatchObject({ id: 7, cancel: true });
    const answer = { id: 9, status: 201, headers: ['a', 'b'], body: Buffer.from('ok'), bodyTicket: '', errorCode: '', errorMessage: '' };
    expect(mux.responseDeserialize(encodeMuxResponse(answer))).toEqual(answer);
    const error = { id: 10, status: 0, headers: [], body: Buffer.alloc(0), bodyTicket: '', errorCode: 'WEFT_NOT_SERVING', errorMessage: 'no' };
    const e = decodeMuxResponse(mux.responseSerialize(error));
    expect({ ...e, body: Buffer.from(e.body) }).toEqual(error);
  });

  it('FetchBodyRequest both ways', () => {
    expect(fetch.requestDeserialize(encodeFetchBodyRequest({ ticket: 'abc' }))).toEqual({ ticket: 'abc' });
    expect(decodeFetchBodyRequest(fetch.requestSerialize({ ticket: 'abc' }))).toEqual({ ticket: 'abc' });
  });

  it('skips fields it does not know and refuses truncated input', () => {
    const withExtra = Buffer.concat([encodeInvokeResponse({ status: 200, headers: [], body: Buffer.from('x'), bodyTicket: '' }), Buffer.from([0x48, 0x05, 0x52, 0x01, 0x7a])]);
    expect(decodeInvokeResponse(withExtra).status).toBe(200);
    const full = encodeInvokeRequest({ head, body: Buffer.alloc(10) });
    expect(() => decodeInvokeRequest(full.subarray(0, full.length - 3))).toThrow(/past the end|truncated/);
    expect(() => decodeInvokeRequest(Buffer.alloc(0))).toThrow('InvokeRequest without head');
  });
});
