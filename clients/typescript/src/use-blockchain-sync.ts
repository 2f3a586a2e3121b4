// useBlockchainSync(): the spec's React hook, on the typed client. It starts a
// job, follows it over server-sent events (falling back to polling when the
// stream is unavailable), fetches the result, and on unmount aborts every
// request it has in flight. The job itself goes on on the server: a job
// survives its client (the spec's "Resilient").

import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import {
  ChainsyncClient,
  JobCancelledError,
  JobFailedError,
  WaitTimeoutError,
  jobFailedError,
  type Job,
  type JobStatus,
  type StartSyncRequest,
  type SyncResult,
} from './async-blockchain-sync.js';

export interface UseBlockchainSyncOptions {
  /** A client to use; otherwise one is made from baseUrl and token. */
  client?: ChainsyncClient;
  /** The bridge's URL; '' (default) is the page's own origin, as in the spec. */
  baseUrl?: string;
  token?: string;
  /** 'auto' (default): server-sent events, polling when they fail; 'sse' or 'poll' only. */
  transport?: 'auto' | 'sse' | 'poll';
  /** Polling interval (the fallback). Default 2000 ms. */
  intervalMs?: number;
  /** Give up following a job after this long (WaitTimeoutError). Default 600 000 ms. */
  timeoutMs?: number;
}

export interface BlockchainSyncState {
  isLoading: boolean;
  /** 0..100 */
  progress: number;
  /** The job's message ("Processing proposals..."), as the spec's hook sets `status`. */
  status: string;
  /** The job's status value, or 'idle' before the first sync. */
  state: JobStatus | 'idle';
  jobId: string | null;
  job: Job | null;
  /** The records once the job completed. */
  result: SyncResult | null;
  /** Why the last sync did not produce a result (JobFailedError, a ChainsyncError, ...). */
  error: Error | null;
}

export interface UseBlockchainSync extends BlockchainSyncState {
  /**
   * Starts a job (a number is blocksBack, as in the spec) and follows it.
   * Resolves with the result, or undefined when the job failed, was cancelled,
   * was superseded by another sync() or the component unmounted (see `error`).
   * It never rejects.
   */
  sync: (request?: number | StartSyncRequest) => Promise<SyncResult | undefined>;
  /** Asks the server to cancel the current job; the hook then reports state 'cancelled'. */
  cancel: () => Promise<void>;
}

const IDLE: BlockchainSyncState = {
  isLoading: false,
  progress: 0,
  status: '',
  state: 'idle',
  jobId: null,
  job: null,
  result: null,
  error: null,
};

function fromJob(job: Job): Partial<BlockchainSyncState> {
  return { job, progress: job.progress, status: job.message, state: job.status };
}

export function useBlockchainSync(options: UseBlockchainSyncOptions = {}): UseBlockchainSync {
  const { baseUrl, token, transport = 'auto', intervalMs, timeoutMs = 600_000 } = options;
  const client = useMemo(
    () => options.client ?? new ChainsyncClient({ baseUrl, token }),
    [options.client, baseUrl, token],
  );
  const [state, setState] = useState<BlockchainSyncState>(IDLE);
  const mounted = useRef(false);
  const run = useRef<AbortController | null>(null);
  const jobId = useRef<string | null>(null);
  const cancelWanted = useRef(false);

  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
      run.current?.abort(new DOMException('useBlockchainSync: the component unmounted', 'AbortError'));
      run.current = null;
    };
  }, []);

  const sync = useCallback(
    async (request: number | StartSyncRequest = 1000): Promise<SyncResult | undefined> => {
      run.current?.abort(new DOMException('useBlockchainSync: superseded by a new sync()', 'AbortError'));
      const controller = new AbortController();
      run.current = controller;
      const { signal } = controller;
      const current = () => mounted.current && run.current === controller;
      const update = (patch: Partial<BlockchainSyncState>) => {
        if (current()) setState((s) => ({ ...s, ...patch }));
      };
      const started = Date.now();
      const timer = setTimeout(
        () =>
          controller.abort(
            new WaitTimeoutError(`the sync did not end within ${timeoutMs} ms`, {
              code: 'CLIENT_TIMEOUT',
              status: 0,
              details: { jobId: jobId.current, timeoutMs },
            }),
          ),
        timeoutMs,
      );
      jobId.current = null;
      cancelWanted.current = false;
      if (current()) setState({ ...IDLE, isLoading: true, state: 'pending' });
      try {
        const body = typeof request === 'number' ? { blocksBack: request } : request;
        const start = await client.startSync(body, { signal });
        const id = start.jobId;
        jobId.current = id;
        update({ jobId: id, status: start.message, ...(start.job ? fromJob(start.job) : {}) });
        if (cancelWanted.current) await client.cancel(id, { signal });

        let final: Job | undefined;
        if (transport !== 'poll') {
          try {
            // Two quick reconnects at most: past that, polling (which retries with backoff) takes over.
            final = await client.watch(id, (event) => update(fromJob(event.job)), {
              signal,
              maxReconnects: 2,
              retryMs: 250,
            });
          } catch (err) {
            if (signal.aborted || transport === 'sse') throw err;
            // no event stream (an older bridge, a proxy that buffers): poll instead
          }
        }
        let result: SyncResult;
        if (final) {
          if (final.status === 'failed') throw jobFailedError(final);
          if (final.status === 'cancelled') throw new JobCancelledError(final);
          result = (await client.getResult(id, { signal })).result;
        } else {
          const left = Math.max(1, timeoutMs - (Date.now() - started));
          result = (
            await client.waitForResult(id, { signal, intervalMs, timeoutMs: left, onProgress: (job) => update(fromJob(job)) })
          ).result;
        }
        update({ isLoading: false, result, progress: 100, state: 'completed' });
        return result;
      } catch (err) {
        const error = signal.aborted ? signal.reason : err;
        const job = error instanceof JobFailedError || error instanceof JobCancelledError ? error.job : undefined;
        const ours = error instanceof JobCancelledError && cancelWanted.current;
        update({
          isLoading: false,
          ...(job ? fromJob(job) : {}),
          error: ours ? null : error instanceof Error ? error : new Error(String(error)),
        });
        return undefined;
      } finally {
        clearTimeout(timer);
        if (run.current === controller) run.current = null;
      }
    },
    [client, transport, intervalMs, timeoutMs],
  );

  const cancel = useCallback(async (): Promise<void> => {
    if (!run.current) return;
    cancelWanted.current = true;
    const id = jobId.current;
    if (!id) return; // still starting: sync() cancels as soon as it has the id
    try {
      await client.cancel(id, { signal: run.current?.signal });
    } catch (err) {
      if (mounted.current && run.current) setState((s) => ({ ...s, error: err instanceof Error ? err : new Error(String(err)) }));
    }
  }, [client]);

  return { ...state, sync, cancel };
}
