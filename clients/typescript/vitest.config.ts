import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vitest/config';

const src = (file: string) => fileURLToPath(new URL(`./src/${file}`, import.meta.url));

// The suites talk to a real bridge (CHAINSYNC_TEST_BRIDGE_URL, and
// CHAINSYNC_TEST_SLOW_BRIDGE_URL whose jobs take seconds), started by
// tests/test_typescript.py. The hook and docs suites run in jsdom (see their
// headers). The package name resolves to src/, as in the docs' examples.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@chainsync\/client\/react$/, replacement: src('use-blockchain-sync.ts') },
      { find: /^@chainsync\/client$/, replacement: src('index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    reporters: ['verbose'],
  },
});
