import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ALLOW_ALL, accessDenied, evaluate, parseAccessControl, splitPath } from '../../src/security/acl.ts';
import type { WorkloadId } from '../../src/security/spiffe.ts';

const caller = (appId: string, namespace = 'default', trustDomain = 'public'): WorkloadId => ({ trustDomain, namespace, appId });

const CONFIG = `
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: orders-config
spec:
  tracing:
    samplingRate: "1"
  accessControl:
    defaultAction: deny
    trustDomain: "public"
    policies:
      - appId: frontend
        defaultAction: deny
        trustDomain: public
        namespace: default
        operations:
          - name: /orders/*
            httpVerb: [GET]
            action: allow
          - name: /orders/*/items/**
            httpVerb: ["*"]
            action: allow
          - name: /orders/admin
            httpVerb: [GET]
            action: deny
          - name: /reports/**
            httpVerb: [GET, POST]
            action: allow
      - appId: billing
        namespace: finance
        trustDomain: corp.example
        defaultAction: allow
        operations:
          - name: /refunds/**
            httpVerb: [POST]
            action: deny
      - appId: auditor
        namespace: default
        operations:
          - name: /reports/v1*
            action: allow
`;

const acl = parseAccessControl(parseYaml(CONFIG), 'orders.yaml');

describe('evaluate: the allow/deny matrix', () => {
  const cases: Array<[string, WorkloadId | undefined, string, string | undefined, boolean, string]> = [
    // caller, method, verb, allowed, where
    ['frontend GET one order', caller('frontend'), '/orders/42', 'GET', true, 'policies[0].operations[0]'],
    ['frontend POST one order: verb not listed, app default deny', caller('frontend'), '/orders/42', 'POST', false, 'policies[0].defaultAction'],
    ['* matches exactly one segment', caller('frontend'), '/orders/42/extra', 'GET', false, 'policies[0].defaultAction'],
    ['* needs a segment', caller('frontend'), '/orders', 'GET', false, 'policies[0].defaultAction'],
    ['** matches many segments', caller('frontend'), '/orders/42/items/7/price', 'DELETE', true, 'policies[0].operations[1]'],
    ['** matches zero segments', caller('frontend'), '/orders/42/items', 'PATCH', true, 'policies[0].operations[1]'],
    ['literal beats *', caller('frontend'), '/orders/admin', 'GET', false, 'policies[0].operations[2]'],
    ['case-insensitive path', caller('frontend'), '/ORDERS/Admin', 'get', false, 'policies[0].operations[2]'],
    ['normalized path cannot dodge a deny', caller('frontend'), '/reports/../orders//./admin', 'GET', false, 'policies[0].operations[2]'],
    ['percent-escaped letters are decoded', caller('frontend'), '/orders/%61dmin', 'GET', false, 'policies[0].operations[2]'],
    ['method without leading slash', caller('frontend'), 'orders/42', 'GET', true, 'policies[0].operations[0]'],
    ['reports POST', caller('frontend'), '/reports/q3/summary', 'POST', true, 'policies[0].operations[3]'],
    ['reports PUT not listed', caller('frontend'), '/reports/q3', 'PUT', false, 'policies[0].defaultAction'],
    ['gRPC call (no verb) matches on path alone', caller('frontend'), '/orders/42', undefined, true, 'policies[0].operations[0]'],
    ['unknown app: global default deny', caller('stranger'), '/orders/42', 'GET', false, 'defaultAction'],
    ['right app, wrong namespace: global default', caller('frontend', 'staging'), '/orders/42', 'GET', false, 'defaultAction'],
    ['right app, wrong trust domain: global default', caller('frontend', 'default', 'evil.example'), '/orders/42', 'GET', false, 'defaultAction'],
    ['billing in its trust domain: app default allow', caller('billing', 'finance', 'corp.example'), '/invoices/1', 'GET', true, 'policies[1].defaultAction'],
    ['billing refund POST denied', caller('billing', 'finance', 'corp.example'), '/refunds/1/confirm', 'POST', false, 'policies[1].operations[0]'],
    ['billing refund GET falls to app default', caller('billing', 'finance', 'corp.example'), '/refunds/1', 'GET', true, 'policies[1].defaultAction'],
    ['billing with default trust domain does not match', caller('billing', 'finance'), '/invoices/1', 'GET', false, 'defaultAction'],
    ['in-segment glob, no httpVerb = any verb', caller('auditor'), '/reports/v1beta', 'DELETE', true, 'policies[2].operations[0]'],
    ['no app default: falls to global default', caller('auditor'), '/orders/1', 'GET', false, 'defaultAction'],
    ['no verified identity: global default', undefined, '/orders/42', 'GET', false, 'defaultAction'],
  ];
  for (const [name, who, method, verb, allowed, where] of cases) {
    it(name, () => {
      const d = evaluate(acl, who, { method, verb });
      expect({ allowed: d.allowed, where: d.where }).toEqual({ allowed, where });
      expect(d.reason.length).toBeGreaterThan(10);
    });
  }

  it('the reason names the operation and the caller', () => {
    const d = evaluate(acl, caller('frontend'), { method: '/orders/admin', verb: 'GET' });
    expect(d.reason).toContain('policies[0].operations[2]');
    expect(d.reason).toContain('/orders/admin');
    expect(d.reason).toContain('spiffe://public/ns/default/frontend');
    expect(d.policy).toBe('operation');
  });

  it('a wrong trust domain is pointed out in the reason', () => {
    const d = evaluate(acl, caller('frontend', 'default', 'evil.example'), { method: '/orders/1', verb: 'GET' });
    expect(d.policy).toBe('global');
    expect(d.reason).toContain('trust domain public');
  });

  it('accessDenied carries WEFT_ACCESS_DENIED and the reason', () => {
    const d = evaluate(acl, caller('stranger'), { method: '/x', verb: 'GET' });
    const err = accessDenied(d, 'orders');
    expect(err.code).toBe('WEFT_ACCESS_DENIED');
    expect(err.grpcStatus).toBe(7);
    expect(err.publicMessage).toContain('failed to invoke, id: orders');
    expect(err.message).toContain('global defaultAction is deny');
  });
});

describe('evaluate: defaults', () => {
  it('no access control: allow everything, even without identity', () => {
    expect(evaluate(ALLOW_ALL, undefined, { method: '/x', verb: 'DELETE' })).toMatchObject({ allowed: true, policy: 'none' });
    expect(parseAccessControl(undefined)).toBe(ALLOW_ALL);
    expect(parseAccessControl({ kind: 'Configuration', spec: { tracing: {} } })).toBe(ALLOW_ALL);
    expect(parseAccessControl({})).toBe(ALLOW_ALL);
    expect(parseAccessControl({ policies: [] })).toBe(ALLOW_ALL);
  });

  it('policies but no defaultAction: deny', () => {
    const a = parseAccessControl({ policies: [{ appId: 'a', namespace: 'default' }] });
    expect(a.defaultAction).toBe('deny');
    expect(evaluate(a, caller('b'), { method: '/x', verb: 'GET' }).allowed).toBe(false);
    // a matching app without operations or app default also gets the global deny
    expect(evaluate(a, caller('a'), { method: '/x', verb: 'GET' }).allowed).toBe(false);
  });

  it('global allow with an app-level deny', () => {
    const a = parseAccessControl({ defaultAction: 'Allow', policies: [{ appId: 'a', namespace: 'default', defaultAction: 'DENY' }] });
    expect(evaluate(a, caller('a'), { method: '/x', verb: 'GET' })).toMatchObject({ allowed: false, policy: 'app' });
    expect(evaluate(a, caller('b'), { method: '/x', verb: 'GET' })).toMatchObject({ allowed: true, policy: 'global' });
  });

  it('an operation action defaults to allow', () => {
    const a = parseAccessControl({ defaultAction: 'deny', policies: [{ appId: 'a', namespace: 'ns1', operations: [{ name: 'ping', httpVerb: ['GET'] }] }] });
    expect(evaluate(a, caller('a', 'ns1'), { method: 'ping', verb: 'GET' }).allowed).toBe(true);
    expect(evaluate(a, caller('a', 'ns1'), { method: 'ping', verb: 'POST' }).allowed).toBe(false);
  });

  it('accepts the bare accessControl mapping', () => {
    const a = parseAccessControl(parseYaml(CONFIG).spec.accessControl);
    expect(a.policies).toHaveLength(3);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.policies[0]?.operations)).toBe(true);
  });

  it('among equally specific operations the first listed wins', () => {
    const a = parseAccessControl({ defaultAction: 'allow', policies: [{ appId: 'a', namespace: 'default', operations: [
      { name: '/x/*', httpVerb: ['*'], action: 'deny' },
      { name: '/*/y', httpVerb: ['*'], action: 'allow' },
    ] }] });
    expect(evaluate(a, caller('a'), { method: '/x/y', verb: 'GET' })).toMatchObject({ allowed: false, where: 'policies[0].operations[0]' });
  });

  it('fewer ** wins over more literal segments', () => {
    const a = parseAccessControl({ defaultAction: 'allow', policies: [{ appId: 'a', namespace: 'default', operations: [
      { name: '/a/b/c/**', httpVerb: ['*'], action: 'deny' },
      { name: '/a/*/c/d', httpVerb: ['*'], action: 'allow' },
    ] }] });
    expect(evaluate(a, caller('a'), { method: '/a/b/c/d', verb: 'GET' }).where).toBe('policies[0].operations[1]');
  });
});

describe('parseAccessControl: errors name the field', () => {
  const bad: Array<[string, unknown, string]> = [
    ['not a mapping', [1], 'accessControl: must be a mapping'],
    ['bad defaultAction', { defaultAction: 'maybe' }, 'accessControl.defaultAction: must be allow or deny (got "maybe")'],
    ['unknown field', { defaultActon: 'deny' }, 'accessControl.defaultActon: unknown field'],
    ['bad trust domain', { trustDomain: 'Bad Domain' }, 'accessControl.trustDomain: "Bad Domain" is not a valid trust domain'],
    ['policies not a list', { policies: { appId: 'a' } }, 'accessControl.policies: must be a list'],
    ['missing appId', { policies: [{ namespace: 'default' }] }, 'accessControl.policies[0].appId: is required'],
    ['missing namespace', { policies: [{ appId: 'a' }] }, 'accessControl.policies[0].namespace: is required'],
    ['bad app id', { policies: [{ appId: 'a.b', namespace: 'default' }] }, 'accessControl.policies[0].appId: "a.b" is not a valid app id'],
    ['duplicate policy', { policies: [{ appId: 'a', namespace: 'default' }, { appId: 'a', namespace: 'default', trustDomain: 'public' }] }, 'accessControl.policies[1].appId: "a" in namespace default (trust domain public) already has a policy at policies[0]'],
    ['operation without name', { policies: [{ appId: 'a', namespace: 'n', operations: [{ httpVerb: ['GET'] }] }] }, 'accessControl.policies[0].operations[0].name: is required'],
    ['bad verb', { policies: [{ appId: 'a', namespace: 'n', operations: [{ name: '/x', httpVerb: ['GET', 'FETCH'] }] }] }, 'accessControl.policies[0].operations[0].httpVerb[1]: "FETCH" is not an HTTP verb'],
    ['empty verb list', { policies: [{ appId: 'a', namespace: 'n', operations: [{ name: '/x', httpVerb: [] }] }] }, 'accessControl.policies[0].operations[0].httpVerb: must be a non-empty list'],
    ['bad operation action', { policies: [{ appId: 'a', namespace: 'n', operations: [{ name: '/x', action: 'permit' }] }] }, 'accessControl.policies[0].operations[0].action: must be allow or deny'],
    ['query in name', { policies: [{ appId: 'a', namespace: 'n', operations: [{ name: '/x?y=1' }] }] }, 'accessControl.policies[0].operations[0].name: "/x?y=1" must be a path'],
  ];
  for (const [name, doc, message] of bad) {
    it(name, () => {
      expect(() => parseAccessControl(doc)).toThrow(message);
      try {
        parseAccessControl(doc);
      } catch (err) {
        expect((err as { code: string }).code).toBe('WEFT_CONFIG');
      }
    });
  }

  it('names the path inside a whole Configuration document', () => {
    const doc = parseYaml(CONFIG);
    doc.spec.accessControl.policies[1].operations[0].httpVerb = ['YEET'];
    expect(() => parseAccessControl(doc, 'orders.yaml')).toThrow('orders.yaml.spec.accessControl.policies[1].operations[0].httpVerb[0]: "YEET" is not an HTTP verb');
    expect(() => parseAccessControl({ kind: 'Resiliency', spec: {} }, 'r.yaml')).toThrow('r.yaml.kind: must be Configuration');
  });
});

describe('splitPath', () => {
  it('normalizes', () => {
    expect(splitPath('//A/./b/../C/')).toEqual(['a', 'c']);
    expect(splitPath('/%7Euser/caf%C3%A9')).toEqual(['~user', 'café']);
    // what cannot be normalized unambiguously matches nothing
    expect(splitPath('/a/%2F')).toBeNull();
    expect(splitPath('/../../x')).toBeNull();
  });

  it('denies a method that cannot be normalized, even where the policy would allow its look-alike', () => {
    const acl = parseAccessControl({ defaultAction: 'allow', policies: [{ appId: 'front', namespace: 'default', defaultAction: 'allow', operations: [{ name: '/admin/**', action: 'deny' }] }] });
    const caller = { trustDomain: 'public', namespace: 'default', appId: 'front' };
    for (const method of ['x/%2F..%2Fadmin', 'a/%00', '..%2Fadmin', '%252e%252e/admin', 'a\\..\\admin']) {
      expect(evaluate(acl, caller, { method, verb: 'GET' }).allowed, method).toBe(false);
    }
    expect(evaluate(acl, caller, { method: 'x/../admin/users', verb: 'GET' }).allowed).toBe(false);
    expect(evaluate(acl, caller, { method: '%61dmin/users', verb: 'GET' }).allowed).toBe(false);
    expect(evaluate(acl, caller, { method: 'ADMIN', verb: 'GET' }).allowed).toBe(false);
    expect(evaluate(acl, caller, { method: 'public/x', verb: 'GET' }).allowed).toBe(true);
  });

  it('refuses an operation name that cannot be normalized', () => {
    expect(() => parseAccessControl({ policies: [{ appId: 'a', namespace: 'default', operations: [{ name: '/a/%2F' }] }] })).toThrow('policies[0].operations[0].name');
  });
});
