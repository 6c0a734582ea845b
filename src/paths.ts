/**
 * Where weft's own files are, whether this module runs as TypeScript from `src/` or compiled
 * into `dist/src/` (`npm run build`; bin/weft-cli.js runs the compiled tree when it is current).
 * Files outside the module graph (the .proto files, the worker entry) are found from here.
 */
import { fileURLToPath } from 'node:url';

/** This file is compiled JavaScript (dist/src/paths.js), not the TypeScript source. */
export const COMPILED = import.meta.url.endsWith('.js');

/** The package's root directory (the one holding package.json, proto/, src/). */
export const PACKAGE_ROOT = fileURLToPath(new URL(COMPILED ? '../../' : '../', import.meta.url));

/** The .proto files' root. */
export const PROTO_ROOT = fileURLToPath(new URL('proto/', new URL(`file://${PACKAGE_ROOT}`)));

/** A module of weft's own by its source path (e.g. `workers/peer-worker.ts`), in the form this tree runs. */
export function moduleUrl(sourcePath: string): string {
  const rel = COMPILED ? `dist/${sourcePath.replace(/\.ts$/, '.js')}` : sourcePath;
  return new URL(rel, new URL(`file://${PACKAGE_ROOT}`)).href;
}
