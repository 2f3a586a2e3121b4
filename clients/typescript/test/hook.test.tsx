// @vitest-environment jsdom
// useBlockchainSync() in a DOM (jsdom + @testing-library/react) against the
// real bridges: it follows a job to its result, reports failures, cancels,
// falls back to polling, and on unmount aborts everything it had in flight.
import { act, cleanup, fireEvent, render, renderHook, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';

import {
  ChainsyncClient,
  InvalidArgumentError,
  JobFailedError,
  WaitTimeoutError,
  type SyncResult,
} from '../src/async-blockchain-sync.js';
import { useBlockchainSync } from '../src/use-blockchain-sync.js';
import { authBridgeUrl, authToken, bridgeUrl, recordingFetch, slowBridgeUrl, waitForEnd } from './helpers.js';

const WAIT = { timeout: 30_000, interval: 20 };

afterEach(() => cleanup());

describe('useBlockchainSync', () => {
  it('starts a job, follows it over SSE and ends with the result', async () => {
    const { fetch, calls } = recordingFetch();
    const client = new ChainsyncClient({ baseUrl: bridgeUrl(), fetch });
    const { result } = renderHook(() => useBlockchainSync({ client }));
    expect(result.current).toMatchObject({ isLoading: false, progress: 0, status: '', state: 'idle', result: null, error: null });

    let done!: Promise<SyncResult | undefined>;
    act(() => {
      done = result.current.sync({ isFullSync: true });
    });
    expect(result.current.isLoading).toBe(true);
    const records = await done;
    await waitFor(() => expect(result.current.isLoading).toBe(false), WAIT);
    expect(result.current).toMatchObject({ progress: 100, state: 'completed', error: null });
    expect(result.current.result).toBe(records);
    expect(records!.proposals.length).toBeGreaterThan(0);
    expect(result.current.jobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(typeof result.current.status).toBe('string');
    const paths = calls.map((c) => new URL(c.url).pathname.replace(/[0-9a-f-]{36}/, ':id'));
    expect(paths).toEqual([
      '/api/blockchain/sync',
      '/api/blockchain/sync/events/:id',
      '/api/blockchain/sync/result/:id',
    ]);
  });

  it('the spec form: sync(blocksBack) with a number', async () => {
    const { result } = renderHook(() => useBlockchainSync({ baseUrl: bridgeUrl() }));
    let records: SyncResult | undefined;
    await act(async () => {
      records = await result.current.sync(100);
    });
    expect(records).toBeDefined();
    expect(result.current.job?.status).toBe('completed');
    expect(result.current.result!.toBlock - result.current.result!.fromBlock).toBeLessThanOrEqual(100);
  });

  it('passes its token to the bridge (and reports a missing one)', async () => {
    const { result } = renderHook(() => useBlockchainSync({ baseUrl: authBridgeUrl(), token: authToken() }));
    await act(async () => {
      await result.current.sync(100);
    });
    expect(result.current).toMatchObject({ state: 'completed', error: null });
    const anonymous = renderHook(() => useBlockchainSync({ baseUrl: authBridgeUrl() })).result;
    await act(async () => {
      await anonymous.current.sync(100);
    });
    expect(anonymous.current.error).toMatchObject({ status: 401, code: 'MISSING_TOKEN' });
  });

  it('reports a bad request as an InvalidArgumentError naming the field, and never rejects', async () => {
    const { result } = renderHook(() => useBlockchainSync({ baseUrl: bridgeUrl() }));
    let records: SyncResult | undefined = {} as SyncResult;
    await act(async () => {
      records = await result.current.sync({ blocksBack: -1 });
    });
    expect(records).toBeUndefined();
    expect(result.current.isLoading).toBe(false);
    expect(result.current.error).toBeInstanceOf(InvalidArgumentError);
    expect(result.current.error).toMatchObject({ status: 400, field: 'blocksBack' });
  });

  it('reports a failed job with its code', async () => {
    const { result } = renderHook(() => useBlockchainSync({ baseUrl: bridgeUrl() }));
    await act(async () => {
      await result.current.sync({ fromBlock: '999999999', toBlock: '999999999' });
    });
    expect(result.current.error).toBeInstanceOf(JobFailedError);
    expect(result.current.error).toMatchObject({ code: 'INVALID_RANGE' });
    expect(result.current.state).toBe('failed');
    expect(result.current.result).toBeNull();
  });

  it('cancel() stops the running job on the server; the hook ends cancelled without an error', async () => {
    const client = new ChainsyncClient({ baseUrl: slowBridgeUrl() });
    const { result } = renderHook(() => useBlockchainSync({ client }));
    let done!: Promise<SyncResult | undefined>;
    act(() => {
      done = result.current.sync({ isFullSync: true });
    });
    await waitFor(() => expect(result.current.progress).toBeGreaterThan(0), WAIT);
    await act(() => result.current.cancel());
    expect(await done).toBeUndefined();
    await waitFor(() => expect(result.current.state).toBe('cancelled'), WAIT);
    expect(result.current).toMatchObject({ isLoading: false, error: null, result: null });
    expect((await client.getStatus(result.current.jobId!)).status).toBe('cancelled');
  });

  it('falls back to polling when the event stream cannot be opened', async () => {
    // A network fault on the event-stream URL only (the service is real and untouched).
    const { fetch, calls } = recordingFetch((url) => url.includes('/events/'));
    const client = new ChainsyncClient({ baseUrl: bridgeUrl(), fetch });
    const { result } = renderHook(() => useBlockchainSync({ client, intervalMs: 50 }));
    const t0 = Date.now();
    await act(async () => {
      await result.current.sync({ isFullSync: true });
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(result.current).toMatchObject({ state: 'completed', progress: 100, error: null });
    expect(result.current.result!.reports.length).toBeGreaterThan(0);
    const kinds = calls.map((c) => new URL(c.url).pathname.split('/')[4]);
    expect(kinds.filter((k) => k === 'events')).toHaveLength(3); // the first try and two reconnects
    expect(kinds.filter((k) => k === 'status').length).toBeGreaterThanOrEqual(1);
    expect(kinds.at(-1)).toBe('result');
  });

  it("transport 'poll' polls at intervalMs; timeoutMs ends the wait with WaitTimeoutError", async () => {
    const { fetch, calls } = recordingFetch();
    const client = new ChainsyncClient({ baseUrl: slowBridgeUrl(), fetch });
    const { result } = renderHook(() => useBlockchainSync({ client, transport: 'poll', intervalMs: 50, timeoutMs: 700 }));
    await act(async () => {
      await result.current.sync({ isFullSync: true });
    });
    expect(result.current.error).toBeInstanceOf(WaitTimeoutError);
    expect(result.current.isLoading).toBe(false);
    expect(calls.some((c) => c.url.includes('/events/'))).toBe(false);
    expect(calls.filter((c) => c.url.includes('/status/')).length).toBeGreaterThanOrEqual(3);
    await client.cancel(result.current.jobId!);
  });

  it('on unmount aborts every request in flight and starts no new one; the job goes on', async () => {
    const { fetch, calls } = recordingFetch();
    const client = new ChainsyncClient({ baseUrl: slowBridgeUrl(), fetch });
    const { result, unmount } = renderHook(() => useBlockchainSync({ client }));
    let done!: Promise<SyncResult | undefined>;
    act(() => {
      done = result.current.sync({ isFullSync: true });
    });
    await waitFor(() => expect(result.current.progress).toBeGreaterThan(0), WAIT);
    const jobId = result.current.jobId!;
    const stream = calls.find((c) => c.url.includes('/events/'))!;
    expect(stream.signal?.aborted).toBe(false);
    expect(stream.settled).toBe(false); // the event stream is open

    const before = calls.length;
    const snapshot = { ...result.current };
    unmount();
    expect(await done).toBeUndefined();
    for (const call of calls) expect(call.settled || call.signal?.aborted, call.url).toBe(true);
    await waitFor(() => expect(stream.settled).toBe(true), WAIT); // the body was cancelled
    await new Promise((r) => setTimeout(r, 2500)); // longer than a poll interval and a reconnect
    expect(calls.length).toBe(before);
    expect(result.current).toEqual(snapshot); // no state update after unmount

    const job = await waitForEnd(new ChainsyncClient({ baseUrl: slowBridgeUrl() }), jobId);
    expect(job.status).toBe('completed'); // the job survives its client, as the spec says
  });

  it('a new sync() supersedes the running one, which resolves undefined', async () => {
    const { fetch, calls } = recordingFetch();
    const client = new ChainsyncClient({ baseUrl: slowBridgeUrl(), fetch });
    const { result } = renderHook(() => useBlockchainSync({ client }));
    let first!: Promise<SyncResult | undefined>;
    act(() => {
      first = result.current.sync({ isFullSync: true });
    });
    await waitFor(() => expect(result.current.progress).toBeGreaterThan(0), WAIT);
    const firstJob = result.current.jobId!;
    const firstStream = calls.find((c) => c.url.includes(`/events/${firstJob}`))!;
    let second!: Promise<SyncResult | undefined>;
    act(() => {
      second = result.current.sync({ blocksBack: 10 });
    });
    expect(await first).toBeUndefined();
    expect(firstStream.signal?.aborted).toBe(true);
    expect(await second).toBeDefined();
    // second resolved outside act(): React renders its last state update soon after
    await waitFor(() => expect(result.current).toMatchObject({ state: 'completed', error: null }), WAIT);
    expect(result.current.jobId).not.toBe(firstJob);
    await client.cancel(firstJob).catch(() => undefined);
  });
});

function SyncPanel({ baseUrl }: { baseUrl: string }) {
  const { sync, isLoading, progress, state, result, error } = useBlockchainSync({ baseUrl });
  return (
    <div>
      <button disabled={isLoading} onClick={() => void sync({ blocksBack: 200 })}>
        Sync
      </button>
      <p role="status">
        {state} {progress}%
      </p>
      {result && <p>proposals: {result.proposals.length}</p>}
      {error && <p role="alert">{error.message}</p>}
    </div>
  );
}

describe('in a component', () => {
  it('a click syncs and the page shows the outcome', async () => {
    render(<SyncPanel baseUrl={bridgeUrl()} />);
    expect(screen.getByRole('status').textContent).toBe('idle 0%');
    fireEvent.click(screen.getByRole('button', { name: 'Sync' }));
    expect((screen.getByRole('button') as HTMLButtonElement).disabled).toBe(true);
    await screen.findByText(/^proposals: \d+$/, undefined, WAIT);
    expect(screen.getByRole('status').textContent).toBe('completed 100%');
    expect(screen.queryByRole('alert')).toBeNull();
    expect((screen.getByRole('button') as HTMLButtonElement).disabled).toBe(false);
  });
});
