/**
 * Reads the node's Resiliency files once at start. Problems name the file and the field
 * (`resiliency[0] (policies.yaml): spec.policies.retries.fast.maxRetries: ...`).
 * The texts travel to the outbound threads, which parse them again (once, at start).
 */
import { readFileSync } from 'node:fs';
import { WeftError } from '../errors.ts';
import { parseResiliency, ResiliencyPolicies } from './policy.ts';

export interface LoadedResiliency {
  readonly texts: readonly string[];
  readonly policies: ResiliencyPolicies;
}

export function loadResiliency(paths: readonly string[]): LoadedResiliency {
  if (paths.length === 0) return { texts: [], policies: ResiliencyPolicies.EMPTY };
  const texts = paths.map((path, i) => {
    try {
      const text = readFileSync(path, 'utf8');
      parseResiliency(text);
      return text;
    } catch (err) {
      const why = err instanceof WeftError ? err.message : `cannot read: ${(err as Error).message}`;
      throw new WeftError('WEFT_CONFIG', `resiliency[${i}] (${path}): ${why}`);
    }
  });
  return { texts, policies: fromTexts(texts) };
}

/** The policies of several documents' texts, later ones overriding earlier ones. */
export function fromTexts(texts: readonly string[]): ResiliencyPolicies {
  return texts.length === 0 ? ResiliencyPolicies.EMPTY : parseResiliency(texts.join('\n---\n'));
}
