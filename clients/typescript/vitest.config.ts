import { defineConfig } from 'vitest/config';

// The suites talk to a real bridge (CHAINSYNC_BRIDGE_URL, and
// CHAINSYNC_SLOW_BRIDGE_URL whose jobs take seconds), started by
// tests/test_typescript.py. The hook suite runs in jsdom (see its header).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    reporters: ['verbose'],
  },
});
