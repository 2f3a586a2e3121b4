// "Any language": Node with @grpc/grpc-js and @grpc/proto-loader loads
// proto/chainsync/v1/jobs.proto as published (its google/api imports are
// vendored under proto/google/), starts a job over gRPC, reads the WatchJob
// stream to the end, and fetches the result; plus resume, errors and cancel.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { PROTO_ROOT, env, require } from './deps.mjs';

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const LOAD_OPTIONS = { includeDirs: [PROTO_ROOT], longs: String, enums: String, defaults: true, oneofs: true };
const TERMINAL = new Set(['JOB_STATE_COMPLETED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);

function loadService() {
  const definition = protoLoader.loadSync('chainsync/v1/jobs.proto', LOAD_OPTIONS);
  return grpc.loadPackageDefinition(definition).chainsync.v1.JobService;
}

function unary(client, method, request, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: new Date(Date.now() + timeoutMs) }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

/** Reads a WatchJob stream to its end (bounded by a deadline); returns its events. */
function watch(client, request, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const events = [];
    const call = client.WatchJob(request, { deadline: new Date(Date.now() + timeoutMs) });
    call.on('data', (event) => events.push(event));
    call.on('error', reject);
    call.on('end', () => resolve(events));
  });
}

function sequences(events) {
  return events.map((e) => BigInt(e.sequence));
}

function assertIncreasing(values, what) {
  for (let i = 1; i < values.length; i++) assert.ok(values[i] > values[i - 1], `${what} must increase: ${values}`);
}

describe('JobService from Node, proto loaded from proto/', () => {
  let JobService;
  let client;
  let slow;

  before(() => {
    JobService = loadService();
    client = new JobService(env('CHAINSYNC_TEST_GRPC_ADDR'), grpc.credentials.createInsecure());
    slow = new JobService(env('CHAINSYNC_TEST_SLOW_GRPC_ADDR'), grpc.credentials.createInsecure());
  });

  after(() => {
    client?.close();
    slow?.close();
  });

  test('the published proto loads with only proto/ on the include path', () => {
    const definition = protoLoader.loadSync('chainsync/v1/jobs.proto', LOAD_OPTIONS);
    const methods = Object.keys(definition['chainsync.v1.JobService']).sort();
    assert.deepEqual(methods, ['CancelJob', 'DeleteJob', 'GetJob', 'GetResult', 'ListJobs', 'StartSync', 'WatchJob']);
    assert.equal(definition['chainsync.v1.JobService'].WatchJob.responseStream, true);
  });

  test('StartSync, WatchJob to the end, GetResult', async () => {
    const started = await unary(client, 'StartSync', { isFullSync: true });
    assert.match(started.jobId, /^[0-9a-f-]{36}$/);
    assert.ok(['JOB_STATE_PENDING', 'JOB_STATE_RUNNING'].includes(started.job.state), started.job.state);

    const events = await watch(client, { jobId: started.jobId });
    assert.ok(events.length >= 1);
    const last = events.at(-1).job;
    assert.equal(last.state, 'JOB_STATE_COMPLETED', JSON.stringify(last));
    assert.equal(last.progress, 100);
    assertIncreasing(sequences(events), 'sequence numbers');
    const progress = events.map((e) => e.job.progress);
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b), 'progress never goes down');
    assert.ok(events.slice(0, -1).every((e) => !TERMINAL.has(e.job.state)), 'only the last event is terminal');

    const job = await unary(client, 'GetJob', { jobId: started.jobId });
    const result = await unary(client, 'GetResult', { jobId: started.jobId });
    assert.equal(result.jobId, started.jobId);
    assert.equal(result.fromBlock, job.fromBlock);
    assert.equal(result.toBlock, job.toBlock);
    assert.equal(typeof result.toBlock, 'string', 'uint64 arrives as a decimal string with longs: String');
    assert.ok(BigInt(result.toBlock) >= BigInt(result.fromBlock));
    assert.match(result.toBlockHash, /^0x[0-9a-f]{64}$/);
    for (const kind of ['proposals', 'petitions', 'reports']) {
      assert.ok(result[kind].length > 0, `a full sync of the demo chain has ${kind}`);
      assert.equal(String(result[kind].length), result[`${kind}Total`]);
      for (const record of result[kind]) assert.match(record.id, /^[1-9][0-9]*$/);
    }
    const p = result.proposals[0];
    assert.match(p.creator, /^0x[0-9a-fA-F]{40}$/);
    assert.match(p.yesVotes, /^[0-9]+$/);
  });

  test('WatchJob with afterSequence replays exactly the events after it', async () => {
    const started = await unary(slow, 'StartSync', { isFullSync: true });
    const live = await watch(slow, { jobId: started.jobId });
    assert.equal(live.at(-1).job.state, 'JOB_STATE_COMPLETED');
    assert.ok(live.length >= 3, `a slow job shows several events, got ${live.length}`);
    const cut = live[1].sequence;
    const resumed = await watch(slow, { jobId: started.jobId, afterSequence: cut });
    assert.deepEqual(sequences(resumed), sequences(live.slice(2)));
    assert.deepEqual(resumed.map((e) => e.job.progress), live.slice(2).map((e) => e.job.progress));
    // Without afterSequence a finished job's stream is its current state, once.
    const now = await watch(slow, { jobId: started.jobId });
    assert.deepEqual(sequences(now), [BigInt(live.at(-1).sequence)]);
  });

  test('errors carry the canonical code and an ErrorInfo reason', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    await assert.rejects(unary(client, 'GetJob', { jobId: missing }), (err) => {
      assert.equal(err.code, grpc.status.NOT_FOUND);
      const details = err.metadata.get('grpc-status-details-bin');
      assert.equal(details.length, 1, 'a google.rpc.Status rides in the trailers');
      assert.ok(Buffer.from(details[0]).includes('JOB_NOT_FOUND'), 'its ErrorInfo reason is JOB_NOT_FOUND');
      return true;
    });
    await assert.rejects(unary(client, 'GetJob', { jobId: 'not-a-uuid' }), (err) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      return true;
    });
  });

  test('CancelJob stops a running job; the stream ends CANCELLED', async () => {
    const started = await unary(slow, 'StartSync', { isFullSync: true });
    const events = [];
    const done = new Promise((resolve, reject) => {
      const call = slow.WatchJob({ jobId: started.jobId }, { deadline: new Date(Date.now() + 60_000) });
      call.on('data', (event) => {
        events.push(event);
        if (event.job.state === 'JOB_STATE_RUNNING' && event.job.progress > 0 && !events.cancelAsked) {
          events.cancelAsked = true;
          unary(slow, 'CancelJob', { jobId: started.jobId }).catch(reject);
        }
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    await done;
    assert.ok(events.cancelAsked, 'the job was seen running before it ended');
    assert.equal(events.at(-1).job.state, 'JOB_STATE_CANCELLED', JSON.stringify(events.at(-1).job));
    await assert.rejects(unary(slow, 'GetResult', { jobId: started.jobId }), (err) => {
      assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
      return true;
    });
    const listed = await unary(slow, 'ListJobs', { state: 'JOB_STATE_CANCELLED', pageSize: 100 });
    assert.ok(listed.jobs.some((j) => j.id === started.jobId));
  });
});

describe('JobService from Node with a bearer token', () => {
  let client;

  before(() => {
    const JobService = loadService();
    client = new JobService(env('CHAINSYNC_TEST_AUTH_GRPC_ADDR'), grpc.credentials.createInsecure());
  });

  after(() => client?.close());

  function withToken(token) {
    const metadata = new grpc.Metadata();
    if (token) metadata.set('authorization', `Bearer ${token}`);
    return metadata;
  }

  test('calls with `authorization: Bearer <token>` metadata work; the stream too', async () => {
    const metadata = withToken(env('CHAINSYNC_TEST_AUTH_TOKEN'));
    const started = await new Promise((resolve, reject) =>
      client.StartSync({ blocksBack: 100 }, metadata, (err, r) => (err ? reject(err) : resolve(r))),
    );
    const events = await new Promise((resolve, reject) => {
      const seen = [];
      const call = client.WatchJob({ jobId: started.jobId }, metadata, { deadline: new Date(Date.now() + 60_000) });
      call.on('data', (e) => seen.push(e));
      call.on('error', reject);
      call.on('end', () => resolve(seen));
    });
    assert.equal(events.at(-1).job.state, 'JOB_STATE_COMPLETED');
  });

  test('without it (or with a wrong one) UNAUTHENTICATED', async () => {
    for (const token of [undefined, 'wrong']) {
      await assert.rejects(
        new Promise((resolve, reject) =>
          client.GetJob({ jobId: '00000000-0000-4000-8000-000000000000' }, withToken(token), (err, r) =>
            err ? reject(err) : resolve(r),
          ),
        ),
        (err) => err.code === grpc.status.UNAUTHENTICATED,
      );
    }
  });
});
