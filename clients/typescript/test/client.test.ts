// The client against a real bridge + gRPC server + anvil devnet (started by
// tests/test_typescript.py): happy paths, every error it types, timeouts,
// aborts, server-sent events with resume, cancel, list and delete.
import { afterAll, describe, expect, it } from 'vitest';

import {
  ChainsyncClient,
  ChainsyncError,
  ConflictError,
  CursorNotCompletedError,
  CursorNotFoundError,
  InvalidArgumentError,
  JobCancelledError,
  JobFailedError,
  JobNotCompletedError,
  JobNotFoundError,
  NetworkError,
  UnauthenticatedError,
  WaitTimeoutError,
  createClient,
  type Job,
  type JobEvent,
  type JobStats,
} from '../src/async-blockchain-sync.js';
import {
  UNKNOWN_JOB,
  authBridgeUrl,
  authToken,
  bridgeUrl,
  corsOrigin,
  closedPort,
  recordingFetch,
  slowBridgeUrl,
  waitForEnd,
  waitForRunning,
} from './helpers.js';

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const STATS: (keyof JobStats)[] = [
  'blocksTotal',
  'blocksDone',
  'eventsFound',
  'recordsTotal',
  'recordsDone',
  'blocksPerSecond',
  'etaSeconds',
  'rangeSplits',
  'reorgs',
  'contentCids',
  'contentCached',
  'contentFetched',
  'contentFailed',
  'contentUnresolved',
];
const isBlock = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;

const fast = () => createClient({ baseUrl: bridgeUrl() });
const slow = () => createClient({ baseUrl: slowBridgeUrl() });

// Slow jobs a test leaves running are cancelled at the end, so they do not hold the slow server's workers.
const slowJobs: string[] = [];
async function startSlow(client = slow(), request = { isFullSync: true }): Promise<string> {
  const { jobId } = await client.startSync(request);
  slowJobs.push(jobId);
  return jobId;
}
async function cancelQuietly(...ids: string[]): Promise<void> {
  const client = slow();
  await Promise.all(ids.map((id) => client.cancel(id).catch(() => undefined)));
}
afterAll(() => cancelQuietly(...slowJobs));

async function collect(client: ChainsyncClient, jobId: string, lastEventId?: string): Promise<{ events: JobEvent[]; final: Job }> {
  const events: JobEvent[] = [];
  const final = await client.watch(jobId, (e) => events.push(e), { lastEventId });
  return { events, final };
}

describe('start, status, result', () => {
  it('starts a full sync and waits for its exact result: numbers for blocks and counts, strings for uint256', async () => {
    const client = fast();
    const started = await client.startSync({ isFullSync: true });
    expect(started.success).toBe(true);
    expect(started.jobId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(started.message).toBe('Blockchain sync job started');
    expect(started.statusUrl).toBe(`/api/blockchain/sync/status/${started.jobId}`);
    expect(started.resultUrl).toBe(`/api/blockchain/sync/result/${started.jobId}`);

    const seen: Job[] = [];
    const done = await client.waitForResult(started.jobId, { intervalMs: 50, onProgress: (job) => seen.push(job) });
    expect(done.success).toBe(true);
    expect(done.completedAt).toMatch(RFC3339);
    const progress = seen.map((j) => j.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(seen.at(-1)).toMatchObject({ status: 'completed', progress: 100 });

    const { result } = done;
    for (const n of [result.fromBlock, result.toBlock, result.chainId, result.eventsCount]) expect(isBlock(n), String(n)).toBe(true);
    expect(result.toBlock).toBeGreaterThanOrEqual(result.fromBlock);
    expect(typeof result.processingTime).toBe('number');
    expect(result.cursor).toEqual({ jobId: started.jobId, toBlock: result.toBlock, toBlockHash: result.toBlockHash });
    expect(result).toMatchObject({ after: null, reorg: null, dropped: { proposals: [], petitions: [], reports: [] } });
    expect(result.proposals.length).toBeGreaterThan(0);
    expect(result.petitions.length).toBeGreaterThan(0);
    expect(result.reports.length).toBeGreaterThan(0);
    for (const p of result.proposals) {
      for (const v of [p.id, p.yesVotes, p.noVotes, p.expiredDate, p.categoryId, p.createdAt, p.updatedAt]) {
        expect(v).toMatch(DECIMAL);
      }
      expect(p.creator).toMatch(/^0x[0-9a-fA-F]{40}$/);
      expect(typeof p.activeStatus).toBe('boolean');
      if (p.created) expect(isBlock(p.created.blockNumber) && p.created.blockNumber >= result.fromBlock).toBe(true);
    }
    for (const p of result.petitions) expect([p.signaturesRequired, p.signaturesCount]).toEqual([expect.stringMatching(DECIMAL), expect.stringMatching(DECIMAL)]);
    for (const r of result.reports) expect([r.upvotes, r.downvotes]).toEqual([expect.stringMatching(DECIMAL), expect.stringMatching(DECIMAL)]);

    const job = await client.getStatus(started.jobId);
    expect(job).toMatchObject({ id: started.jobId, type: 'blockchain_sync', status: 'completed', progress: 100 });
    expect(job.toBlock).toBe(result.toBlock);
    expect(job.completedAt).toMatch(RFC3339);
    expect(Object.keys(job.stats).sort()).toEqual([...STATS].sort());
    for (const field of STATS) expect(typeof job.stats[field], field).toBe('number');
    expect(job.stats.blocksDone).toBe(result.toBlock - result.fromBlock + 1);
    expect(await client.getResult(started.jobId)).toEqual(done);
  });

  it('getResult pages with pageSize/pageToken add up to the whole result', async () => {
    const client = fast();
    const { jobId } = await client.startSync({ isFullSync: true });
    const whole = await client.waitForResult(jobId, { intervalMs: 50 });
    expect(whole.nextPageToken).toBeUndefined();
    const kinds = ['proposals', 'petitions', 'reports'] as const;
    const joined = { proposals: [], petitions: [], reports: [] } as Record<(typeof kinds)[number], unknown[]>;
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await client.getResult(jobId, { pageSize: 7, pageToken: token });
      for (const kind of kinds) {
        expect(page.result[kind].length).toBeLessThanOrEqual(7);
        joined[kind].push(...page.result[kind]);
      }
      token = page.nextPageToken;
      pages += 1;
    } while (token && pages < 1000);
    expect(pages).toBeGreaterThan(1);
    for (const kind of kinds) {
      expect(joined[kind]).toEqual(whole.result[kind]);
      expect(whole.result.totals[kind]).toBe(whole.result[kind].length);
    }
    const bad = await client.getResult(jobId, { pageSize: 0 }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 400, field: 'pageSize' });
  });

  it('waitForResult on a finished job answers at once (the first poll is immediate)', async () => {
    const client = fast();
    const { jobId } = await client.startSync({ blocksBack: 50 });
    await waitForEnd(client, jobId);
    const t0 = Date.now();
    const done = await client.waitForResult(jobId); // the spec's defaults: 2 s interval, 10 min timeout
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(isBlock(done.result.toBlock)).toBe(true);
  });

  it('sends the bearer token and extra headers on every request', async () => {
    const { fetch, calls } = recordingFetch();
    const client = new ChainsyncClient({ baseUrl: `${bridgeUrl()}/`, token: 's3cret', headers: { 'X-Trace': 't1' }, fetch });
    await expect(client.getStatus(UNKNOWN_JOB)).rejects.toBeInstanceOf(ChainsyncError);
    expect(calls[0].url).toBe(`${bridgeUrl()}/api/blockchain/sync/status/${UNKNOWN_JOB}`);
    expect(calls[0].headers).toMatchObject({ authorization: 'Bearer s3cret', 'x-trace': 't1', accept: 'application/json' });
  });
});

describe('errors carry the bridge code and the HTTP status', () => {
  it('404 JOB_NOT_FOUND for an unknown job (status and result)', async () => {
    const client = fast();
    for (const call of [() => client.getStatus(UNKNOWN_JOB), () => client.getResult(UNKNOWN_JOB)]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(JobNotFoundError);
      expect(err).toMatchObject({ status: 404, code: 'JOB_NOT_FOUND', name: 'JobNotFoundError' });
      expect((err as Error).message).toContain(UNKNOWN_JOB);
    }
  });

  it('400 INVALID_JOB_ID for a malformed id', async () => {
    const err = await fast().getStatus('not-a-job').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toMatchObject({ status: 400, code: 'INVALID_JOB_ID' });
  });

  it('400 naming the field for a bad start request', async () => {
    const client = fast();
    const negative = await client.startSync({ blocksBack: -5 }).catch((e: unknown) => e);
    expect(negative).toBeInstanceOf(InvalidArgumentError);
    expect(negative).toMatchObject({ status: 400, field: 'blocksBack' });
    expect((negative as Error).message).toContain('blocksBack');

    const typo = await client.startSync({ blocksBak: 10 } as never).catch((e: unknown) => e);
    expect(typo).toBeInstanceOf(InvalidArgumentError);
    expect(typo).toMatchObject({ status: 400, field: 'blocksBak' });

    const wrongType = await client.startSync({ isFullSync: 'yes' } as never).catch((e: unknown) => e);
    expect(wrongType).toMatchObject({ status: 400, field: 'isFullSync' });
  });

  it('409 JOB_NOT_COMPLETED, with the state, for the result of a running job', async () => {
    const client = slow();
    const jobId = await startSlow(client);
    const err = await client.getResult(jobId).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobNotCompletedError);
    expect(err).toMatchObject({ status: 409, code: 'JOB_NOT_COMPLETED' });
    expect(['pending', 'running']).toContain((err as JobNotCompletedError).state?.toLowerCase().replace('job_state_', ''));
    await cancelQuietly(jobId);
  });

  it('a job that fails rejects waitForResult with JobFailedError carrying its code', async () => {
    const client = fast();
    const { jobId } = await client.startSync({ fromBlock: '999999999', toBlock: '999999999' });
    const err = await client.waitForResult(jobId, { intervalMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err).toMatchObject({ code: 'INVALID_RANGE', status: 0 });
    expect((err as JobFailedError).job).toMatchObject({ id: jobId, status: 'failed', errorCode: 'INVALID_RANGE' });
    expect((err as Error).message).toContain('999999999');
    // Its result will never exist: 409 JOB_FAILED, carrying the job's own errorCode.
    const noResult = await client.getResult(jobId).catch((e: unknown) => e);
    expect(noResult).toBeInstanceOf(ConflictError);
    expect(noResult).toMatchObject({ status: 409, code: 'JOB_FAILED', details: { jobId, state: 'failed', errorCode: 'INVALID_RANGE' } });
  });

  it('a cursor (after) must name a completed job of the same type: 404, 409 or 400 naming after', async () => {
    const client = fast();
    const missing = await client.startSync({ after: UNKNOWN_JOB }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(CursorNotFoundError);
    expect(missing).toBeInstanceOf(JobNotFoundError);
    expect(missing).toMatchObject({ status: 404, code: 'CURSOR_NOT_FOUND', field: 'after' });

    const { jobId: reports } = await client.startSync({ blocksBack: 3, type: 'reports_sync' });
    await waitForEnd(client, reports);
    const otherType = await client.startSync({ after: reports }).catch((e: unknown) => e);
    expect(otherType).toBeInstanceOf(InvalidArgumentError);
    expect(otherType).toMatchObject({ status: 400, field: 'after' });

    const slowClient = slow();
    const running = await startSlow(slowClient);
    const notYet = await slowClient.startSync({ after: running }).catch((e: unknown) => e);
    expect(notYet).toBeInstanceOf(CursorNotCompletedError);
    expect(notYet).toMatchObject({ status: 409, code: 'CURSOR_NOT_COMPLETED', field: 'after' });
    expect(['pending', 'running']).toContain((notYet as CursorNotCompletedError).state);
    await cancelQuietly(running);
  });

  it('startSync({after}) continues from that job, given its id or its cursor', async () => {
    const client = fast();
    const first = (await client.waitForResult((await client.startSync({ isFullSync: true })).jobId, { intervalMs: 50 })).result;
    const { jobId } = await client.startSync({ after: first.cursor });
    const next = (await client.waitForResult(jobId, { intervalMs: 50 })).result;
    expect(next.after).toBe(first.cursor.jobId);
    expect(next.toBlock).toBeGreaterThanOrEqual(first.toBlock);
    expect(next.cursor.jobId).toBe(jobId);
    const { jobId: third } = await client.startSync({ after: next.cursor.jobId, incremental: true });
    expect((await client.waitForResult(third, { intervalMs: 50 })).result.after).toBe(jobId);
  });

  it('a job past its own timeoutSeconds fails with JOB_TIMEOUT', async () => {
    const client = slow();
    const jobId = await startSlow(client, { isFullSync: true, timeoutSeconds: 1 } as never);
    const err = await client.waitForResult(jobId, { intervalMs: 100, timeoutMs: 30_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err).toMatchObject({ code: 'JOB_TIMEOUT' });
  });

  it('NetworkError (status 0) when nothing listens', async () => {
    const client = createClient({ baseUrl: `http://127.0.0.1:${await closedPort()}` });
    const err = await client.getStatus(UNKNOWN_JOB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect(err).toMatchObject({ code: 'NETWORK_ERROR', status: 0 });
  });
});

describe('waitForResult: timeout, abort, backoff', () => {
  it('gives up with WaitTimeoutError after timeoutMs; the job goes on', async () => {
    const client = slow();
    const jobId = await startSlow(client);
    const t0 = Date.now();
    const err = await client.waitForResult(jobId, { intervalMs: 50, timeoutMs: 400 }).catch((e: unknown) => e);
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect(err).toMatchObject({ code: 'CLIENT_TIMEOUT', status: 0, details: { jobId, timeoutMs: 400 } });
    expect(took).toBeGreaterThanOrEqual(390);
    expect(took).toBeLessThan(1500);
    expect(['pending', 'running']).toContain((await client.getStatus(jobId)).status);
    await cancelQuietly(jobId);
  });

  it('an AbortSignal stops it at once with the signal reason, also mid-request', async () => {
    const client = slow();
    const jobId = await startSlow(client);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const t0 = Date.now();
    const err = await client.waitForResult(jobId, { signal: controller.signal }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1000); // mid-sleep of the 2 s default interval
    expect(err).toMatchObject({ name: 'AbortError' });

    const already = AbortSignal.abort(new Error('mine'));
    await expect(client.waitForResult(jobId, { signal: already })).rejects.toThrow('mine');
    await expect(client.getStatus(jobId, { signal: already })).rejects.toThrow('mine');
    await cancelQuietly(jobId);
  });

  it('polls at intervalMs while the job moves, and retries a dead bridge with backoff until the timeout', async () => {
    const { fetch, calls } = recordingFetch();
    const client = createClient({ baseUrl: `http://127.0.0.1:${await closedPort()}`, fetch });
    const err = await client
      .waitForResult(UNKNOWN_JOB, { intervalMs: 50, timeoutMs: 1200, backoff: { factor: 2, maxIntervalMs: 400 } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    const gaps = calls.slice(1).map((c, i) => c.at - calls[i].at);
    // 100, 200, 400, 400, ...: it grew, and never past the cap (plus scheduling slack)
    expect(calls.length).toBeGreaterThanOrEqual(3);
    expect(calls.length).toBeLessThanOrEqual(8);
    expect(gaps[1]).toBeGreaterThan(gaps[0]);
    expect(Math.max(...gaps)).toBeLessThan(400 + 250);

    const moving = recordingFetch();
    const polled = createClient({ baseUrl: slowBridgeUrl(), fetch: moving.fetch });
    const jobId = await startSlow(polled);
    await polled.waitForResult(jobId, { intervalMs: 100, backoff: false, timeoutMs: 60_000 });
    const statusCalls = moving.calls.filter((c) => c.url.includes('/status/'));
    expect(statusCalls.length).toBeGreaterThanOrEqual(3);
    const polledGaps = statusCalls.slice(1).map((c, i) => c.at - statusCalls[i].at);
    expect(Math.min(...polledGaps)).toBeGreaterThanOrEqual(95);
  });

  it('a non-transient error (404) is not retried', async () => {
    const { fetch, calls } = recordingFetch();
    const client = createClient({ baseUrl: bridgeUrl(), fetch });
    await expect(client.waitForResult(UNKNOWN_JOB, { intervalMs: 10 })).rejects.toBeInstanceOf(JobNotFoundError);
    expect(calls).toHaveLength(1);
  });
});

// Each of these follows a whole slow job (seconds): they run side by side (the slow server has 4 workers).
describe.concurrent('watch: server-sent events', () => {
  it('follows a job from its current state to the end; the last event is what the status endpoint shows', async ({ expect }) => {
    const client = slow();
    const jobId = await startSlow(client);
    const { events, final } = await collect(client, jobId);
    expect(events.length).toBeGreaterThanOrEqual(3);
    const ids = events.map((e) => BigInt(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(new Set(ids).size).toBe(ids.length);
    const progress = events.map((e) => e.job.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(final).toEqual(events.at(-1)!.job);
    expect(events.every((e) => typeof e.eventTime === 'string' && e.eventTime >= final.createdAt)).toBe(true);
    expect(final).toMatchObject({ id: jobId, status: 'completed', progress: 100 });
    expect(await client.getStatus(jobId)).toEqual(final);
  });

  it('resumes with lastEventId: exactly the events after it, none twice', async ({ expect }) => {
    const client = slow();
    const jobId = await startSlow(client);
    const whole = await collect(client, jobId);
    expect(whole.events.length).toBeGreaterThanOrEqual(3);
    const resumed = await collect(client, jobId, whole.events[1].id);
    expect(resumed.events).toEqual(whole.events.slice(2));
    expect(resumed.final).toEqual(whole.final);
    // Without lastEventId a finished job's stream is its final state, once.
    const now = await collect(client, jobId);
    expect(now.events).toEqual([whole.events.at(-1)]);
    // After its last event there is nothing left (the bridge answers 204): the final job, no event.
    const nothing = await collect(client, jobId, whole.events.at(-1)!.id);
    expect(nothing.events).toEqual([]);
    expect(nothing.final).toEqual(whole.final);
  });

  it('an aborted watch resumed with the last id seen misses nothing', async ({ expect }) => {
    const client = slow();
    const jobId = await startSlow(client);
    const first: JobEvent[] = [];
    const controller = new AbortController();
    const stopped = await client
      .watch(
        jobId,
        (e) => {
          first.push(e);
          if (first.length === 2) controller.abort();
        },
        { signal: controller.signal },
      )
      .catch((e: unknown) => e);
    expect(stopped).toMatchObject({ name: 'AbortError' });
    expect(first).toHaveLength(2);
    const rest = await collect(client, jobId, first[1].id);
    expect(rest.final.status).toBe('completed');
    const replay = await collect(client, jobId, first[0].id);
    expect([...first.slice(1), ...rest.events]).toEqual(replay.events);
  });

  it('reconnects with Last-Event-ID when the stream breaks off mid-job', async ({ expect }) => {
    const base = recordingFetch();
    let cuts = 0;
    // The transport (not the service) fails: the first event stream breaks after two job events.
    const breaking = async (input: string, init?: RequestInit): Promise<Response> => {
      const response = await base.fetch(input, init);
      if (!input.includes('/events/') || cuts > 0) return response;
      cuts += 1;
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { done, value } = await reader.read();
          if (done) return controller.close();
          text += decoder.decode(value, { stream: true });
          controller.enqueue(value);
          if ((text.match(/event: job\n/g) ?? []).length >= 2 && /\n\n$/.test(text)) {
            await reader.cancel();
            controller.error(new TypeError('terminated (injected)'));
          }
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const client = new ChainsyncClient({ baseUrl: slowBridgeUrl(), fetch: breaking });
    const jobId = await startSlow(client);
    const events: JobEvent[] = [];
    const final = await client.watch(jobId, (e) => events.push(e), { retryMs: 50 });
    expect(cuts).toBe(1);
    expect(final.status).toBe('completed');
    const streams = base.calls.filter((c) => c.url.includes('/events/'));
    expect(streams.length).toBeGreaterThanOrEqual(2);
    expect(streams[0].headers['last-event-id']).toBeUndefined();
    expect(streams[1].headers['last-event-id']).toBe(events[1].id);
    const replay = await collect(slow(), jobId, events[0].id);
    expect(events.slice(1)).toEqual(replay.events);
  });

  it('rejects with JobNotFoundError for an unknown job, and with what onEvent throws', async ({ expect }) => {
    const client = fast();
    const err = await client.watch(UNKNOWN_JOB, () => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobNotFoundError);
    expect(err).toMatchObject({ status: 404, code: 'JOB_NOT_FOUND' });

    const { jobId } = await client.startSync({ blocksBack: 10 });
    await expect(
      client.watch(jobId, () => {
        throw new Error('from the handler');
      }),
    ).rejects.toThrow('from the handler');
  });
});

describe('cancel, list, delete', () => {
  it('cancel stops a running job: watch ends cancelled, waitForResult rejects JobCancelledError', async () => {
    const client = slow();
    const jobId = await startSlow(client);
    await waitForRunning(client, jobId);
    const job = await client.cancel(jobId);
    expect(job.id).toBe(jobId);
    const final = await client.watch(jobId, () => undefined);
    expect(final.status).toBe('cancelled');
    const err = await client.waitForResult(jobId, { intervalMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobCancelledError);
    expect(err).toMatchObject({ code: 'JOB_CANCELLED' });
    const result = await client.getResult(jobId).catch((e: unknown) => e);
    expect(result).toBeInstanceOf(ConflictError);
    expect(result).toMatchObject({ status: 409, code: 'JOB_CANCELLED', details: { jobId, state: 'cancelled' } });

    const listed = await client.listJobs({ status: 'cancelled', limit: 100 });
    expect(listed.success).toBe(true);
    expect(listed.jobs.map((j) => j.id)).toContain(jobId);
    expect(listed.jobs.every((j) => j.status === 'cancelled')).toBe(true);
    expect(listed.pagination).toMatchObject({ page: 1, limit: 100 });
    expect(listed.pagination.total).toBeGreaterThanOrEqual(1);
  });

  it('listJobs pages, newest first', async () => {
    const client = fast();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await client.startSync({ blocksBack: 5 })).jobId);
    const page1 = await client.listJobs({ limit: 2, page: 1 });
    const page2 = await client.listJobs({ limit: 2, page: 2 });
    expect(page1.jobs).toHaveLength(2);
    expect(page1.jobs.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(page2.jobs[0].id).toBe(ids[0]);
    expect(page1.pagination).toMatchObject({ page: 1, limit: 2 });
    expect(page1.pagination.totalPages).toBe(Math.ceil(page1.pagination.total / 2));
    const bad = await client.listJobs({ limit: 1000 }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ status: 400, field: 'limit' });
  });

  it('deleteJob removes a finished job', async () => {
    const client = fast();
    const { jobId } = await client.startSync({ blocksBack: 5 });
    await waitForEnd(client, jobId);
    await client.deleteJob(jobId);
    await expect(client.getStatus(jobId)).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(client.deleteJob(jobId)).rejects.toBeInstanceOf(JobNotFoundError);
  });
});

describe('bearer token', () => {
  it('with the token every call works, the event stream included', async () => {
    const client = createClient({ baseUrl: authBridgeUrl(), token: authToken() });
    const { jobId } = await client.startSync({ blocksBack: 200 });
    const events: JobEvent[] = [];
    const final = await client.watch(jobId, (e) => events.push(e));
    expect(final.status).toBe('completed');
    expect(events.length).toBeGreaterThanOrEqual(1);
    const { result } = await client.waitForResult(jobId, { intervalMs: 50 });
    expect(result.toBlock).toBe(final.toBlock);
    expect((await client.listJobs({ limit: 5 })).jobs.map((j) => j.id)).toContain(jobId);
  });

  it('without it, or with a wrong one, UnauthenticatedError (401) with the reason', async () => {
    for (const [token, code] of [
      [undefined, 'MISSING_TOKEN'],
      ['wrong', 'INVALID_TOKEN'],
    ] as const) {
      const client = createClient({ baseUrl: authBridgeUrl(), token });
      for (const call of [
        () => client.startSync({}),
        () => client.getStatus(UNKNOWN_JOB),
        () => client.watch(UNKNOWN_JOB, () => undefined),
        () => client.listJobs(),
      ]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UnauthenticatedError);
        expect(err).toMatchObject({ status: 401, code });
      }
    }
  });
});

describe('from a page on another origin (CORS)', () => {
  // What a browser would send before each of the client's requests, asked of the real bridge.
  const SAFELISTED = new Set(['accept', 'accept-language', 'content-language']); // not content-type: application/json

  it("every request the client makes passes the bridge's preflight, and answers carry the origin", async () => {
    const origin = corsOrigin();
    const { fetch, calls } = recordingFetch();
    const client = new ChainsyncClient({ baseUrl: authBridgeUrl(), token: authToken(), fetch });
    const { jobId } = await client.startSync({ blocksBack: 50 });
    const final = await client.watch(jobId, () => undefined);
    await client.watch(jobId, () => undefined, { lastEventId: '1' });
    await client.getStatus(jobId);
    await client.getResult(jobId);
    await client.listJobs({ status: final.status, limit: 5 });
    await client.cancel(jobId);
    await client.deleteJob(jobId);
    expect(new Set(calls.map((c) => c.method))).toEqual(new Set(['GET', 'POST', 'DELETE']));
    expect(calls.some((c) => 'last-event-id' in c.headers)).toBe(true);

    for (const call of calls) {
      const custom = Object.keys(call.headers).filter((h) => !SAFELISTED.has(h)).sort();
      const preflight = await globalThis.fetch(call.url, {
        method: 'OPTIONS',
        headers: {
          Origin: origin,
          'Access-Control-Request-Method': call.method,
          'Access-Control-Request-Headers': custom.join(','),
        },
      });
      const why = `${call.method} ${call.url} with ${custom}: ${preflight.status} ${await preflight.text()}`;
      expect(preflight.status, why).toBe(200);
      expect(preflight.headers.get('access-control-allow-origin'), why).toBe(origin);
      const methods = (preflight.headers.get('access-control-allow-methods') ?? '').split(/,\s*/);
      expect(methods, why).toContain(call.method);
      const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/,\s*/);
      for (const header of custom) expect(allowed, why).toContain(header);
    }

    const stream = await globalThis.fetch(`${authBridgeUrl()}/api/blockchain/sync/events/${UNKNOWN_JOB}`, {
      headers: { Origin: origin, Accept: 'text/event-stream', Authorization: `Bearer ${authToken()}` },
    });
    expect(stream.status).toBe(404);
    expect(stream.headers.get('access-control-allow-origin')).toBe(origin); // errors are readable by the page too
  });
});
