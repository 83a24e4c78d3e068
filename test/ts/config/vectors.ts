// Loads the shared config vectors (vectors/config/), the same files the Python tests read.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { vectorsDir } from '../../../src/util/paths.js';

export interface ConfigVector {
  file: string;
  description: string;
  valid: boolean;
  errorAt: string | null;
  config: unknown;
}

export function loadConfigVectors(): ConfigVector[] {
  const root = join(vectorsDir(), 'config');
  return (['valid', 'invalid'] as const).flatMap((kind) =>
    readdirSync(join(root, kind))
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => {
        const raw = JSON.parse(readFileSync(join(root, kind, f), 'utf8')) as { description: string; error_at?: string; config: unknown };
        return { file: `${kind}/${f}`, description: raw.description, valid: kind === 'valid', errorAt: raw.error_at ?? null, config: raw.config };
      }),
  );
}
