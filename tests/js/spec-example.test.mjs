// The spec's polling example, run as it is (tests/js/spec-polling-example.mjs)
// in a child Node process against the real bridge, completes: it prints its
// progress lines and "Sync completed:" with the result, and exits by itself.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { env } from './deps.mjs';

const EXAMPLE = fileURLToPath(new URL('./spec-polling-example.mjs', import.meta.url));

function runNode(file, extraEnv, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], {
      env: { ...process.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

test("the spec's JavaScript polling example completes against the bridge", { timeout: 150_000 }, async () => {
  const started = Date.now();
  const run = await runNode(EXAMPLE, { CHAINSYNC_URL: env('CHAINSYNC_TEST_BRIDGE_URL') }, 120_000);
  const output = `exit ${run.code} ${run.signal ?? ''}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
  assert.equal(run.code, 0, output);
  assert.equal(run.stderr, '', output);
  const progress = [...run.stdout.matchAll(/^Progress: (\d+)% - (.*)$/gm)].map((m) => Number(m[1]));
  assert.ok(progress.length >= 1, output);
  assert.equal(progress.at(-1), 100, output);
  assert.deepEqual(progress, [...progress].sort((a, b) => a - b), `progress went down\n${output}`);
  assert.match(run.stdout, /^Sync completed: \{/m, output);
  assert.match(run.stdout, /success: true/, output);
  assert.match(run.stdout, /proposals: \[/, output);
  assert.match(run.stdout, /completedAt: '\d{4}-\d\d-\d\dT/, output);
  // The example polls after 1 s, then every 2 s: it ends soon after the job does.
  assert.ok(Date.now() - started < 120_000);
});
