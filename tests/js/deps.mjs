// The Node tests' npm packages live in clients/typescript/node_modules (one
// package.json, one lock file): resolve them from there.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const require = createRequire(new URL('../../clients/typescript/package.json', import.meta.url));
export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));

/** An environment variable the pytest module (tests/test_typescript.py) sets, or a clear failure. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/test_typescript.py (make test)`);
  return value;
}
