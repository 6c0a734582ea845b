/**
 * YAML parsing, loaded on first use: most nodes read no YAML file at all (the embedded defaults
 * and command-line flags), and the parser is about 5 MB of resident memory once loaded.
 */
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

let yaml: typeof Yaml | null = null;
function load(): typeof Yaml {
  yaml ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yaml;
}

/** One YAML document (`yaml`'s `parse`). */
export function parseYaml(text: string): unknown {
  return load().parse(text);
}

/** Every document of a YAML stream (`yaml`'s `parseAllDocuments`). */
export function parseAllDocuments(text: string): ReturnType<typeof Yaml.parseAllDocuments> {
  return load().parseAllDocuments(text);
}
