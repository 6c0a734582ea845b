/**
 * Registers the resolvers. The built-in ones load at once; `consul` (and its client) only
 * when a node asks for it.
 */
import './resolver-local.ts';
import './resolver-static.ts';
import { resolverSchemes } from './resolver.ts';

const lazy: Record<string, () => Promise<unknown>> = {
  consul: () => import('./resolver-consul.ts'),
};

export async function loadResolvers(scheme: string): Promise<string[]> {
  const load = lazy[scheme];
  if (load !== undefined && !resolverSchemes().includes(scheme)) await load();
  return resolverSchemes();
}
