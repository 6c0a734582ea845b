/**
 * The circuit breaker's `trip` expression: the small, safe subset of CEL that Dapr users write,
 * e.g. `consecutiveFailures > 5` or `requests >= 20 && totalFailures * 100 / requests > 50`.
 *
 * Grammar (lowest precedence first):
 *   or   := and ('||' and)*
 *   and  := cmp ('&&' cmp)*
 *   cmp  := sum (('>' | '>=' | '<' | '<=' | '==' | '!=') sum)?
 *   sum  := prod (('+' | '-') prod)*
 *   prod := atom (('*' | '/') atom)*
 *   atom := integer | counter name | '(' or ')'
 *
 * Types are checked when compiling: comparisons take integers, `&&` / `||` take booleans, and the
 * whole expression must be a boolean. Compiling builds a tree of closures (no eval, no Function):
 * evaluation allocates nothing. Integer division truncates like CEL's; dividing by zero makes the
 * expression false (Dapr does not trip when evaluation fails).
 */

export interface BreakerCounts {
  requests: number;
  totalSuccesses: number;
  totalFailures: number;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
}

export const COUNTER_NAMES = ['requests', 'totalSuccesses', 'totalFailures', 'consecutiveSuccesses', 'consecutiveFailures'] as const;
type CounterName = (typeof COUNTER_NAMES)[number];

export interface TripExpression {
  readonly source: string;
  /** True when the breaker should open. Never throws. */
  evaluate(counts: BreakerCounts): boolean;
}

/** Thrown by compileTrip with a message fit to follow `<field>: `. */
export class TripSyntaxError extends Error {
  override name = 'TripSyntaxError';
}

type NumFn = (c: BreakerCounts) => number;
type BoolFn = (c: BreakerCounts) => boolean;
type Typed = { t: 'int'; f: NumFn } | { t: 'bool'; f: BoolFn };

const DIV_BY_ZERO = Symbol('division by zero');
const TOKEN = /\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|==|!=|&&|\|\||[<>()+\-*/]))/y;

export function compileTrip(source: string): TripExpression {
  const tokens = tokenize(source);
  let pos = 0;
  const peek = (): string | undefined => tokens[pos];
  const fail = (what: string): never => {
    throw new TripSyntaxError(`${what} in trip expression "${source}"`);
  };

  const parseOr = (): Typed => {
    let left = parseAnd();
    while (peek() === '||') {
      pos++;
      const l = asBool(left, '||'), r = asBool(parseAnd(), '||');
      left = { t: 'bool', f: (c) => l(c) || r(c) };
    }
    return left;
  };
  const parseAnd = (): Typed => {
    let left = parseCmp();
    while (peek() === '&&') {
      pos++;
      const l = asBool(left, '&&'), r = asBool(parseCmp(), '&&');
      left = { t: 'bool', f: (c) => l(c) && r(c) };
    }
    return left;
  };
  const parseCmp = (): Typed => {
    const left = parseSum();
    const op = peek();
    if (op !== '>' && op !== '>=' && op !== '<' && op !== '<=' && op !== '==' && op !== '!=') return left;
    pos++;
    const right = parseSum();
    if (left.t === 'bool' && right.t === 'bool' && (op === '==' || op === '!=')) {
      const l = left.f, r = right.f;
      return { t: 'bool', f: op === '==' ? (c) => l(c) === r(c) : (c) => l(c) !== r(c) };
    }
    const l = asInt(left, op), r = asInt(right, op);
    switch (op) {
      case '>': return { t: 'bool', f: (c) => l(c) > r(c) };
      case '>=': return { t: 'bool', f: (c) => l(c) >= r(c) };
      case '<': return { t: 'bool', f: (c) => l(c) < r(c) };
      case '<=': return { t: 'bool', f: (c) => l(c) <= r(c) };
      case '==': return { t: 'bool', f: (c) => l(c) === r(c) };
      case '!=': return { t: 'bool', f: (c) => l(c) !== r(c) };
    }
  };
  const parseSum = (): Typed => {
    let left = parseProd();
    for (let op = peek(); op === '+' || op === '-'; op = peek()) {
      pos++;
      const l = asInt(left, op), r = asInt(parseProd(), op);
      left = { t: 'int', f: op === '+' ? (c) => l(c) + r(c) : (c) => l(c) - r(c) };
    }
    return left;
  };
  const parseProd = (): Typed => {
    let left = parseAtom();
    for (let op = peek(); op === '*' || op === '/'; op = peek()) {
      pos++;
      const l = asInt(left, op), r = asInt(parseAtom(), op);
      left = {
        t: 'int',
        f: op === '*' ? (c) => l(c) * r(c) : (c) => {
          const d = r(c);
          if (d === 0) throw DIV_BY_ZERO;
          return Math.trunc(l(c) / d);
        },
      };
    }
    return left;
  };
  const parseAtom = (): Typed => {
    const tok = peek();
    if (tok === undefined) return fail('unexpected end');
    pos++;
    if (tok === '(') {
      const inner = parseOr();
      if (peek() !== ')') fail('missing ")"');
      pos++;
      return inner;
    }
    if (/^\d+$/.test(tok)) {
      const n = Number(tok);
      if (!Number.isSafeInteger(n)) fail(`integer ${tok} is too large`);
      return { t: 'int', f: () => n };
    }
    if (/^[A-Za-z_]/.test(tok)) {
      if (!(COUNTER_NAMES as readonly string[]).includes(tok)) fail(`unknown name "${tok}" (known: ${COUNTER_NAMES.join(', ')})`);
      const name = tok as CounterName;
      return { t: 'int', f: (c) => c[name] };
    }
    return fail(`unexpected "${tok}"`);
  };
  const asBool = (x: Typed, op: string): BoolFn => (x.t === 'bool' ? x.f : fail(`"${op}" needs true/false operands (a comparison), not a number`));
  const asInt = (x: Typed, op: string): NumFn => (x.t === 'int' ? x.f : fail(`"${op}" needs integer operands, not a comparison`));

  if (tokens.length === 0) fail('empty expression');
  const root = parseOr();
  if (pos < tokens.length) fail(`unexpected "${tokens[pos]}"`);
  if (root.t !== 'bool') fail('the expression must be a comparison (true or false), not a number');
  const f = root.f as BoolFn;
  return Object.freeze({
    source,
    evaluate(counts: BreakerCounts): boolean {
      try {
        return f(counts);
      } catch (err) {
        if (err === DIV_BY_ZERO) return false;
        throw err;
      }
    },
  });
}

function tokenize(source: string): string[] {
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  let i = 0;
  while (i < source.length) {
    if (/^\s*$/.test(source.slice(i))) break;
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(source);
    if (m === null) {
      const rest = source.slice(i).trimStart();
      throw new TripSyntaxError(`unexpected character "${rest[0] ?? ''}" in trip expression "${source}"`);
    }
    tokens.push((m[1] ?? m[2] ?? m[3]) as string);
    i = TOKEN.lastIndex;
  }
  return tokens;
}
