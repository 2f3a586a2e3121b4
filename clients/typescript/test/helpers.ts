// Shared by the suites: the real processes' addresses (set by
// tests/test_typescript.py) and small helpers. Nothing here fakes the service.
import { createServer } from 'node:net';

import { ChainsyncClient, TERMINAL_STATUSES, type FetchLike, type Job } from '../src/async-blockchain-sync.js';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this suite through tests/test_typescript.py (make test)`);
  return value;
}

/** The session's bridge: jobs finish in about a second. */
export const bridgeUrl = (): string => env('CHAINSYNC_TEST_BRIDGE_URL');
/** A bridge whose server reads the chain through a delaying proxy: a full sync takes seconds. */
export const slowBridgeUrl = (): string => env('CHAINSYNC_TEST_SLOW_BRIDGE_URL');

/** A bridge in front of a server that wants `Authorization: Bearer <authToken()>`. */
export const authBridgeUrl = (): string => env('CHAINSYNC_TEST_AUTH_BRIDGE_URL');
export const authToken = (): string => env('CHAINSYNC_TEST_AUTH_TOKEN');
/** The page origin the auth bridge allows (CHAINSYNC_CORS_ORIGINS). */
export const corsOrigin = (): string => env('CHAINSYNC_TEST_CORS_ORIGIN');

export const UNKNOWN_JOB = '00000000-0000-4000-8000-000000000000';

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Polls the status until the job ends; bounded. */
export async function waitForEnd(client: ChainsyncClient, jobId: string, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const job = await client.getStatus(jobId);
    if (TERMINAL_STATUSES.has(job.status)) return job;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${jobId} did not end within ${timeoutMs} ms`);
}

/** Waits until the job is running with some work done (a slow job mid-way); bounded. */
export async function waitForRunning(client: ChainsyncClient, jobId: string, timeoutMs = 30_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const job = await client.getStatus(jobId);
    if (job.status === 'running' && job.progress > 0) return job;
    if (TERMINAL_STATUSES.has(job.status)) throw new Error(`job ${jobId} ended (${job.status}) before it was seen running`);
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`job ${jobId} was not running within ${timeoutMs} ms`);
}

export interface RecordedCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  signal?: AbortSignal;
  at: number;
  /** Set once the response body has been read to its end (or failed). */
  settled: boolean;
}

/**
 * The global fetch, recording every call (URL, headers, signal, when):
 * instrumentation of the real transport, to see what a client sent and
 * whether it aborted it. `fail` may throw for chosen URLs (a network fault).
 */
export function recordingFetch(fail?: (url: string) => boolean): { fetch: FetchLike; calls: RecordedCall[] } {
  const calls: RecordedCall[] = [];
  const fetchImpl: FetchLike = async (input, init) => {
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const call: RecordedCall = {
      url: input,
      method: init?.method ?? 'GET',
      headers,
      signal: init?.signal ?? undefined,
      at: Date.now(),
      settled: false,
    };
    calls.push(call);
    if (fail?.(input)) {
      call.settled = true;
      throw new TypeError('fetch failed (injected network fault)');
    }
    try {
      const response = await globalThis.fetch(input, init);
      if (!response.body) {
        call.settled = true;
        return response;
      }
      const reader = response.body.getReader();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) {
              call.settled = true;
              controller.close();
            } else controller.enqueue(value);
          } catch (err) {
            call.settled = true;
            controller.error(err);
          }
        },
        cancel(reason) {
          call.settled = true;
          return reader.cancel(reason);
        },
      });
      return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
    } catch (err) {
      call.settled = true;
      throw err;
    }
  };
  return { fetch: fetchImpl, calls };
}
