// The chainsync JSON API (ASYNC-BLOCKCHAIN-SYNC.md) from TypeScript, in Node 20
// and browsers: start a sync job, poll or watch it, fetch its records, cancel,
// list. Only `fetch`, `AbortController` and `TextDecoder` are needed; nothing
// runs on import.
//
// Numbers: block numbers, chain ids, counts, every JobStats field and
// `progress` are JSON numbers; uint256 values and entity ids are decimal
// strings (they do not fit a double). Timestamps are RFC 3339 UTC strings
// with milliseconds (2026-11-30T12:53:26.847Z).
//
// An application that keeps its own copy of the records applies the results
// to a SyncView (`applyResult`, `syncView`; docs/reorgs.md): the view then
// equals the chain at the last result's toBlock, across reorgs too.

import { SseParser, readEventStream } from './sse.js';

// ---------------------------------------------------------------------------
// Types of the JSON API

/** A decimal integer as a string, e.g. "1100" (uint256 values and entity ids). */
export type DecimalString = string;

export type JobStatus = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';
export type JobType = 'blockchain_sync' | 'proposals_sync' | 'petitions_sync' | 'reports_sync';

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>(['completed', 'failed', 'cancelled']);

/** Live figures of a job, from work really done: every field of jobs.proto's JobStats, always present. */
export interface JobStats {
  blocksTotal: number;
  blocksDone: number;
  eventsFound: number;
  recordsTotal: number;
  recordsDone: number;
  blocksPerSecond: number;
  /** Estimated seconds left; 0 when unknown. */
  etaSeconds: number;
  /** eth_getLogs ranges split because the provider refused them. */
  rangeSplits: number;
  /** Times the chain changed under the range and part of it was synced again (docs/reorgs.md). */
  reorgs: number;
  /** IPFS content, when resolved (docs/ipfs.md; 0 otherwise): distinct CIDs in the records... */
  contentCids: number;
  /** ...served from the server's cache, fetched (and verified) by this job, that no gateway gave. */
  contentCached: number;
  contentFetched: number;
  contentFailed: number;
  /** Record fields left unresolved (not a CID, or not fetched). */
  contentUnresolved: number;
}

/** The spec's job object (`GET /api/blockchain/sync/status/{jobId}` → `job`). */
export interface Job {
  id: string;
  type: JobType;
  status: JobStatus;
  /** 0..100, never goes down; 100 when completed. */
  progress: number;
  message: string;
  createdAt: string;
  startedAt?: string;
  /** When the job reached any terminal status. */
  endedAt?: string;
  /** When the job completed (only for `completed`). */
  completedAt?: string;
  /** The resolved range, once the job has started. */
  fromBlock?: number;
  toBlock?: number;
  stats: JobStats;
  /** Why the job failed (or was cancelled). */
  error?: string;
  /** UPPER_SNAKE_CASE reason: RPC_UNAVAILABLE, JOB_TIMEOUT, JOB_CANCELLED, ... */
  errorCode?: string;
}

/** Where a record came from: the event that created it, when that is inside the range. */
export interface Provenance {
  blockNumber: number;
  transactionHash: string;
  logIndex: number;
}

/**
 * A `*Cid` field whose IPFS content is not in the record (only when the server resolves IPFS content:
 * CHAINSYNC_IPFS_GATEWAY, docs/ipfs.md).
 */
export interface UnresolvedContent {
  /** The record's field: titleCid, shortDescriptionCid, descriptionInDetailsCid, desCid, descriptionCid. */
  field: string;
  /** The field's value as on chain. */
  cid: string;
  reason: 'not_a_cid' | 'hash_mismatch' | 'too_large' | 'not_text' | 'not_found' | 'unavailable';
}

/** Proposals.getProposal(id) at toBlock. */
export interface Proposal {
  id: DecimalString;
  titleCid: string;
  shortDescriptionCid: string;
  descriptionInDetailsCid: string;
  yesVotes: DecimalString;
  noVotes: DecimalString;
  /** EIP-55 checksummed address. */
  creator: string;
  activeStatus: boolean;
  /** Unix seconds, as the contract stores them. */
  expiredDate: DecimalString;
  categoryId: DecimalString;
  createdAt: DecimalString;
  updatedAt: DecimalString;
  removed: boolean;
  created: Provenance | null;
  /** IPFS content behind titleCid (absent: not resolved; see unresolved). */
  title?: string;
  /** IPFS content behind shortDescriptionCid. */
  shortDescription?: string;
  /** IPFS content behind descriptionInDetailsCid. */
  description?: string;
  /** The CID fields whose content could not be resolved; absent when none. */
  unresolved?: UnresolvedContent[];
}

/** Petitions.getPetition(id) at toBlock. */
export interface Petition {
  id: DecimalString;
  titleCid: string;
  desCid: string;
  signaturesRequired: DecimalString;
  signaturesCount: DecimalString;
  creator: string;
  completed: boolean;
  removed: boolean;
  created: Provenance | null;
  /** IPFS content behind titleCid (absent: not resolved; see unresolved). */
  title?: string;
  /** IPFS content behind desCid. */
  description?: string;
  unresolved?: UnresolvedContent[];
}

/** Reports.getReport(id) at toBlock. */
export interface Report {
  id: DecimalString;
  titleCid: string;
  descriptionCid: string;
  upvotes: DecimalString;
  downvotes: DecimalString;
  creator: string;
  resolved: boolean;
  createdAt: DecimalString;
  resolvedAt: DecimalString;
  removed: boolean;
  created: Provenance | null;
  /** IPFS content behind titleCid (absent: not resolved; see unresolved). */
  title?: string;
  /** IPFS content behind descriptionCid. */
  description?: string;
  unresolved?: UnresolvedContent[];
}

/** The record kinds, in the order a result lists them. */
export const RECORD_KINDS = ['proposals', 'petitions', 'reports'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

/** Where a view stands once it applied a result: pass `jobId` (or the cursor) as `after` to continue. */
export interface Cursor {
  jobId: string;
  toBlock: number;
  toBlockHash: string;
}

/** A branch switch a result handled: blocks forkBlock.. of the branch read before were replaced or lost. */
export interface Reorg {
  forkBlock: number;
  droppedBlocks: number;
}

/** Per kind, the ids earlier results listed that do not exist at toBlock: delete them from your view. */
export type DroppedIds = Record<RecordKind, DecimalString[]>;

/** The spec's `result` object. */
export interface SyncResult {
  proposals: Proposal[];
  petitions: Petition[];
  reports: Report[];
  fromBlock: number;
  toBlock: number;
  /** Hash of toBlock: the chain the records were read from. */
  toBlockHash: string;
  chainId: number;
  /** Events seen in the range. */
  eventsCount: number;
  /** Wall time of the job in milliseconds. */
  processingTime: number;
  /** Records of each kind in the whole result (all pages). */
  totals: Record<RecordKind, number>;
  /** This result's own cursor. */
  cursor: Cursor;
  /** The job this result continued from (an incremental sync's cursor); null when none (a full sync). */
  after: string | null;
  /** The branch switch handled; null when the chain did not reorganise. */
  reorg: Reorg | null;
  /** Ids to delete from a view that applied the earlier results; empty lists when none. */
  dropped: DroppedIds;
}

/** `GET /api/blockchain/sync/result/{jobId}`. */
export interface SyncResultResponse {
  success: true;
  result: SyncResult;
  completedAt: string;
  /** With `pageSize`: pass as `pageToken` for the next page; absent on the last. */
  nextPageToken?: string;
}

/** The body of `POST /api/blockchain/sync` (all optional; see design.md). */
export interface StartSyncRequest {
  /** Sync the last N blocks up to head − confirmations. Default 1000. */
  blocksBack?: number;
  /** Sync from the earliest deployment block. Default false. */
  isFullSync?: boolean;
  type?: JobType;
  /** Idempotency key: the same key within 24 h returns the first job. */
  requestId?: string;
  /** An explicit range instead of blocksBack, both inclusive (a decimal string is taken too). */
  fromBlock?: number | DecimalString;
  toBlock?: number | DecimalString;
  /** Continue from a cursor: the last completed sync of the same type you can see, or `after`. */
  incremental?: boolean;
  /**
   * The cursor: the job whose result you applied last (its id, or a result's or view's `cursor`).
   * Implies `incremental`. See docs/reorgs.md.
   */
  after?: string | Cursor;
  confirmations?: number;
  timeoutSeconds?: number;
}

/** `POST /api/blockchain/sync` answers 202 with this. */
export interface StartSyncResponse {
  success: true;
  jobId: string;
  message: string;
  statusUrl: string;
  resultUrl: string;
  job?: Job;
}

export interface ListJobsQuery {
  status?: JobStatus;
  type?: JobType;
  /** 1-based page number. */
  page?: number;
  /** Jobs per page (the bridge's default 20, at most 100). */
  limit?: number;
  /** Opaque token from a previous answer's nextPageToken, instead of page. */
  pageToken?: string;
}

export interface Pagination {
  page: number;
  limit: number;
  total: number;
  totalPages: number;
}

/** `GET /jobs`. */
export interface ListJobsResponse {
  success: true;
  jobs: Job[];
  pagination: Pagination;
  nextPageToken?: string;
}

/** One server-sent event of `watch`: the job as the status endpoint shows it, with its sequence number. */
export interface JobEvent {
  /** The event id (the job's sequence number, a decimal string); pass it as lastEventId to resume. */
  id: string;
  /** The job as the status endpoint shows it. */
  job: Job;
  /** When the server recorded this change (RFC 3339). */
  eventTime?: string;
}

// ---------------------------------------------------------------------------
// Errors

export interface ChainsyncErrorInit {
  code: string;
  status: number;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * Every error of this client. `code` is the bridge's UPPER_SNAKE_CASE reason
 * (`JOB_NOT_FOUND`, `INVALID_ARGUMENT`, ...), `status` the HTTP status (0 when
 * the error did not come from an HTTP answer: network, timeout, a failed job).
 */
export class ChainsyncError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown>;

  constructor(message: string, init: ChainsyncErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.code = init.code;
    this.status = init.status;
    this.details = init.details ?? {};
  }

  /** The request field the bridge named, for 400s (`blocksBack`, `body`, ...). */
  get field(): string | undefined {
    const field = this.details.field;
    return typeof field === 'string' ? field : undefined;
  }
}

/** 400 (and 413): a bad request body or job id; `field` names the culprit. */
export class InvalidArgumentError extends ChainsyncError {}
/** 401: the bridge wants `Authorization: Bearer <token>`. */
export class UnauthenticatedError extends ChainsyncError {}
/** 403. */
export class PermissionDeniedError extends ChainsyncError {}
/** 404 JOB_NOT_FOUND: no such job (never existed, deleted, or expired after 24 h). */
export class JobNotFoundError extends ChainsyncError {}
/** 409 JOB_NOT_COMPLETED: the result was asked for before the job completed. */
export class JobNotCompletedError extends ChainsyncError {
  /** The job's status at the time, when the bridge said. */
  get state(): string | undefined {
    const state = this.details.state;
    return typeof state === 'string' ? state : undefined;
  }
}
/** 404 CURSOR_NOT_FOUND: `after` names no job you can see (deleted, expired): start again from a full sync. */
export class CursorNotFoundError extends JobNotFoundError {}
/** 409 CURSOR_NOT_COMPLETED: `after` names a job that has not completed (`.state`). */
export class CursorNotCompletedError extends JobNotCompletedError {}
/**
 * Any other 409: JOB_STILL_RUNNING on delete, and the result of a job that will never have one
 * (JOB_FAILED, with `details.errorCode` and `details.error`; JOB_CANCELLED).
 */
export class ConflictError extends ChainsyncError {}
/** 429: slow down; `retryAfterMs` from the Retry-After header when sent. */
export class RateLimitedError extends ChainsyncError {
  retryAfterMs?: number;
}
/** 503 and friends: the bridge or the gRPC server behind it is unavailable. */
export class ServiceUnavailableError extends ChainsyncError {}
/** fetch itself failed (connection refused, reset, DNS) or a stream broke off. */
export class NetworkError extends ChainsyncError {}
/** `waitForResult` gave up after `timeoutMs` (the job itself goes on). */
export class WaitTimeoutError extends ChainsyncError {}
/** The job ended `failed`; `code` is its errorCode, `job` the final job. */
export class JobFailedError extends ChainsyncError {
  constructor(readonly job: Job) {
    super(job.error || `job ${job.id} failed`, {
      code: job.errorCode || 'JOB_FAILED',
      status: 0,
      details: { jobId: job.id },
    });
  }
}
/**
 * An incremental sync failed because the chain changed below the server's reorg window: run a full
 * sync (`isFullSync`), REPLACE your view with its result, and continue after it (docs/reorgs.md).
 */
export class ReorgTooDeepError extends JobFailedError {}

/** The error for a job that ended `failed`: ReorgTooDeepError when that is why. */
export function jobFailedError(job: Job): JobFailedError {
  return job.errorCode === 'REORG_TOO_DEEP' ? new ReorgTooDeepError(job) : new JobFailedError(job);
}

/** The job ended `cancelled`. */
export class JobCancelledError extends ChainsyncError {
  constructor(readonly job: Job) {
    super(job.error || `job ${job.id} was cancelled`, {
      code: job.errorCode || 'JOB_CANCELLED',
      status: 0,
      details: { jobId: job.id },
    });
  }
}

/** The typed error for a bridge error answer `{success: false, error, code, details}`. */
export function errorFromResponse(status: number, body: unknown, headers?: Headers): ChainsyncError {
  const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const code = typeof b.code === 'string' && b.code ? b.code : `HTTP_${status}`;
  const message =
    typeof b.error === 'string' && b.error
      ? b.error
      : typeof b.detail === 'string'
        ? b.detail
        : typeof body === 'string' && body
          ? body.slice(0, 500)
          : `HTTP ${status}`;
  const details =
    b.details && typeof b.details === 'object' ? { ...(b.details as Record<string, unknown>) } : {};
  const init = { code, status, details };
  if (status === 400 || status === 413 || status === 422) return new InvalidArgumentError(message, init);
  if (status === 401) return new UnauthenticatedError(message, init);
  if (status === 403) return new PermissionDeniedError(message, init);
  if (status === 404 && code === 'JOB_NOT_FOUND') return new JobNotFoundError(message, init);
  if (status === 404 && code === 'CURSOR_NOT_FOUND') return new CursorNotFoundError(message, init);
  if (status === 409 && code === 'JOB_NOT_COMPLETED') return new JobNotCompletedError(message, init);
  if (status === 409 && code === 'CURSOR_NOT_COMPLETED') return new CursorNotCompletedError(message, init);
  if (status === 409) return new ConflictError(message, init);
  if (status === 429) {
    const err = new RateLimitedError(message, init);
    const after = Number(headers?.get('retry-after'));
    if (Number.isFinite(after) && after >= 0) err.retryAfterMs = after * 1000;
    return err;
  }
  if (status === 502 || status === 503 || status === 504) return new ServiceUnavailableError(message, init);
  return new ChainsyncError(message, init);
}

/** Errors worth retrying after a pause: the network, 429, 502, 503, 504. */
export function isTransient(err: unknown): boolean {
  return err instanceof NetworkError || err instanceof RateLimitedError || err instanceof ServiceUnavailableError;
}

// ---------------------------------------------------------------------------
// The client

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** Where the bridge is, e.g. "http://127.0.0.1:8080". '' (default) means the page's own origin. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer <token>` when set (CHAINSYNC_API_TOKEN on the server). */
  token?: string;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
  /** A fetch to use instead of the global one (looked up at call time). */
  fetch?: FetchLike;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface GetResultOptions extends RequestOptions {
  /** At most this many records of each kind (1..10 000); the answer's `nextPageToken` continues. */
  pageSize?: number;
  pageToken?: string;
}

export interface Backoff {
  /** Multiplies the interval after a poll that saw no change, or a transient error. Default 1.5. */
  factor?: number;
  /** The interval never grows past this. Default 10 000 ms. */
  maxIntervalMs?: number;
}

export interface WaitOptions extends RequestOptions {
  /** Pause between polls while the job progresses. Default 2000 ms (the spec's). */
  intervalMs?: number;
  /** Give up (WaitTimeoutError) after this long. Default 600 000 ms (the spec's 10 min). */
  timeoutMs?: number;
  /** How the pause grows while nothing changes or the bridge is unavailable; false: fixed interval. */
  backoff?: Backoff | false;
  /** Called with every status seen. */
  onProgress?: (job: Job) => void;
}

export interface WatchOptions extends RequestOptions {
  /** Resume after this event id (sent as Last-Event-ID): only later events arrive. */
  lastEventId?: string;
  /** Reconnect (with Last-Event-ID) when the stream breaks off before the job ends. Default true. */
  reconnect?: boolean;
  /** At most this many reconnects in a row without an event in between. Default 10. */
  maxReconnects?: number;
  /** Pause before a reconnect unless the server sent `retry:`. Default 1000 ms. */
  retryMs?: number;
}

// An `event: error` in the stream carries the bridge's error body but no HTTP status.
const STREAM_ERROR_STATUS: Record<string, number> = {
  JOB_NOT_FOUND: 404,
  INVALID_JOB_ID: 400,
  MISSING_TOKEN: 401,
  INVALID_TOKEN: 401,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  GRPC_UNAVAILABLE: 503,
  UNAVAILABLE: 503,
  GRPC_TIMEOUT: 504,
  DEADLINE_EXCEEDED: 504,
};

const DEFAULT_INTERVAL_MS = 2000;
const DEFAULT_TIMEOUT_MS = 600_000;

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** Resolves after ms, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A controller that aborts when `parent` does (with its reason); `dispose` unhooks it. */
function linkedController(parent?: AbortSignal): { controller: AbortController; dispose: () => void } {
  const controller = new AbortController();
  if (!parent) return { controller, dispose: () => undefined };
  const onAbort = () => controller.abort(abortReason(parent));
  if (parent.aborted) onAbort();
  else parent.addEventListener('abort', onAbort, { once: true });
  return { controller, dispose: () => parent.removeEventListener('abort', onAbort) };
}

function jobPath(kind: 'status' | 'result' | 'events', id: string): string {
  return `/api/blockchain/sync/${kind}/${encodeURIComponent(id)}`;
}

/**
 * A client of one bridge. Every method takes an optional AbortSignal; an
 * aborted call rejects with the signal's reason (an AbortError by default).
 */
export class ChainsyncClient {
  readonly baseUrl: string;
  private readonly token?: string;
  private readonly extraHeaders: Record<string, string>;
  private readonly fetchImpl: FetchLike;

  constructor(options: ClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? '').replace(/\/+$/, '');
    this.token = options.token;
    this.extraHeaders = { ...(options.headers ?? {}) };
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** `POST /api/blockchain/sync`: the job id comes back at once. */
  async startSync(request: StartSyncRequest = {}, options: RequestOptions = {}): Promise<StartSyncResponse> {
    const { after, ...rest } = request;
    const body = after === undefined ? rest : { ...rest, after: typeof after === 'string' ? after : after.jobId };
    return this.request<StartSyncResponse>('POST', '/api/blockchain/sync', { ...options, body });
  }

  /** `GET /api/blockchain/sync/status/{jobId}`: the job's current status and progress. */
  async getStatus(jobId: string, options: RequestOptions = {}): Promise<Job> {
    const body = await this.request<{ job: Job }>('GET', jobPath('status', jobId), options);
    return body.job;
  }

  /** `GET /api/blockchain/sync/result/{jobId}`: JobNotCompletedError (409) until the job completed. */
  async getResult(jobId: string, options: GetResultOptions = {}): Promise<SyncResultResponse> {
    const query = new URLSearchParams();
    if (options.pageSize !== undefined) query.set('pageSize', String(options.pageSize));
    if (options.pageToken) query.set('pageToken', options.pageToken);
    const qs = query.toString();
    return this.request<SyncResultResponse>('GET', jobPath('result', jobId) + (qs ? `?${qs}` : ''), options);
  }

  /**
   * Polls the status until the job ends, then fetches the result. Rejects with
   * JobFailedError / JobCancelledError when the job does not complete,
   * WaitTimeoutError after `timeoutMs`, the signal's reason when aborted.
   * Transient errors (network, 429, 502-504) are retried with backoff until
   * the timeout.
   */
  async waitForResult(jobId: string, options: WaitOptions = {}): Promise<SyncResultResponse> {
    const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const factor = options.backoff === false ? 1 : (options.backoff?.factor ?? 1.5);
    const maxIntervalMs = options.backoff === false ? intervalMs : (options.backoff?.maxIntervalMs ?? 10_000);
    const { controller, dispose } = linkedController(options.signal);
    const signal = controller.signal;
    const timer = setTimeout(
      () =>
        controller.abort(
          new WaitTimeoutError(`job ${jobId} did not end within ${timeoutMs} ms`, {
            code: 'CLIENT_TIMEOUT',
            status: 0,
            details: { jobId, timeoutMs },
          }),
        ),
      timeoutMs,
    );
    const grow = (ms: number) => Math.max(intervalMs, Math.min(maxIntervalMs, ms * factor));
    try {
      let interval = intervalMs;
      let last: Job | undefined;
      // Bounded by timeoutMs: the timer aborts the signal, and every await below honours it.
      for (;;) {
        let job: Job;
        try {
          job = await this.getStatus(jobId, { signal });
        } catch (err) {
          if (signal.aborted) throw abortReason(signal);
          if (!isTransient(err)) throw err;
          interval = grow(interval);
          const wait = err instanceof RateLimitedError && err.retryAfterMs ? Math.max(interval, err.retryAfterMs) : interval;
          await sleep(wait, signal);
          continue;
        }
        options.onProgress?.(job);
        if (job.status === 'completed') return await this.getResult(jobId, { signal });
        if (job.status === 'failed') throw jobFailedError(job);
        if (job.status === 'cancelled') throw new JobCancelledError(job);
        const changed = !last || last.progress !== job.progress || last.status !== job.status || last.message !== job.message;
        interval = changed ? intervalMs : grow(interval);
        last = job;
        await sleep(interval, signal);
      }
    } catch (err) {
      if (signal.aborted) throw abortReason(signal);
      throw err;
    } finally {
      clearTimeout(timer);
      dispose();
    }
  }

  /**
   * Follows the job over server-sent events (`GET /api/blockchain/sync/events/{jobId}`):
   * `onEvent` gets the current state at once, then every change. Resolves with
   * the final job when the job ends (whatever its status). A stream that breaks
   * off is resumed with Last-Event-ID, so no event is lost or repeated.
   */
  async watch(jobId: string, onEvent: (event: JobEvent) => void, options: WatchOptions = {}): Promise<Job> {
    const { signal } = options;
    const reconnect = options.reconnect ?? true;
    const maxReconnects = options.maxReconnects ?? 10;
    let lastId = options.lastEventId ?? '';
    let lastJob: Job | undefined;
    let failures = 0;
    // Bounded: each pass either delivers an event (which resets `failures`) or counts one failure.
    for (;;) {
      if (signal?.aborted) throw abortReason(signal);
      // Only CORS-safelisted headers besides Authorization and Last-Event-ID: a cross-origin page
      // needs no more from the bridge's CORS setup (cache: 'no-store' instead of Cache-Control).
      const headers = this.headers({ Accept: 'text/event-stream' });
      if (lastId) headers['Last-Event-ID'] = lastId;
      let retryMs = options.retryMs ?? 1000;
      let failure: ChainsyncError;
      let response: Response | undefined;
      try {
        response = await this.fetchImpl(this.baseUrl + jobPath('events', jobId), {
          method: 'GET',
          headers,
          signal,
          cache: 'no-store',
        });
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        failure = new NetworkError(`GET ${jobPath('events', jobId)}: ${String((err as Error)?.message ?? err)}`, {
          code: 'NETWORK_ERROR',
          status: 0,
          cause: err,
        });
      }
      if (response) {
        if (!response.ok) {
          const error = await this.errorOf(response);
          if (!(reconnect && isTransient(error))) throw error;
          failure = error;
        } else if (response.status === 204) {
          // The job has ended and its last event was already seen (lastEventId): nothing more will come.
          return lastJob ?? (await this.getStatus(jobId, { signal }));
        } else if (!(response.headers.get('content-type') ?? '').includes('text/event-stream') || !response.body) {
          await response.body?.cancel().catch(() => undefined);
          throw new ChainsyncError(`GET ${jobPath('events', jobId)} did not answer with an event stream`, {
            code: 'NOT_AN_EVENT_STREAM',
            status: response.status,
          });
        } else {
          let ended = false;
          let streamError: unknown;
          const parser = new SseParser((message) => {
            if (streamError !== undefined || ended) return;
            try {
              if (message.event === 'job') {
                const { eventTime, ...job } = JSON.parse(message.data) as Job & { eventTime?: string };
                lastJob = job;
                failures = 0;
                onEvent(eventTime === undefined ? { id: message.id, job } : { id: message.id, job, eventTime });
              } else if (message.event === 'end') {
                ended = true;
              } else if (message.event === 'error') {
                const body = JSON.parse(message.data) as { code?: unknown };
                const code = typeof body?.code === 'string' ? body.code : '';
                streamError = errorFromResponse(STREAM_ERROR_STATUS[code] ?? 500, body);
              }
            } catch (err) {
              streamError = err; // onEvent threw, or the data was not JSON: stop and reject with it
            }
          }, lastId);
          let broken: unknown;
          try {
            await readEventStream(response.body, parser, signal, () => ended || streamError !== undefined);
          } catch (err) {
            if (signal?.aborted) throw abortReason(signal);
            broken = err;
          }
          lastId = parser.lastId;
          if (parser.retryMs !== undefined) retryMs = parser.retryMs;
          if (streamError !== undefined && !(reconnect && isTransient(streamError))) throw streamError;
          if (streamError === undefined && (ended || (lastJob && TERMINAL_STATUSES.has(lastJob.status)))) {
            return lastJob ?? (await this.getStatus(jobId, { signal }));
          }
          failure = streamError !== undefined ? (streamError as ChainsyncError) : new NetworkError(
            `the event stream of job ${jobId} closed before the job ended${broken ? `: ${String((broken as Error)?.message ?? broken)}` : ''}`,
            { code: 'STREAM_CLOSED', status: 0, cause: broken },
          );
        }
      }
      failures += 1;
      if (!reconnect || failures > maxReconnects) throw failure!;
      await sleep(retryMs, signal);
    }
  }

  /** `POST /jobs/{jobId}:cancel`: a running job stops within a couple of seconds and ends `cancelled`. */
  async cancel(jobId: string, options: RequestOptions = {}): Promise<Job> {
    const body = await this.request<{ job?: Job } & Partial<Job>>('POST', `/jobs/${encodeURIComponent(jobId)}:cancel`, {
      ...options,
      body: {},
    });
    return (body.job ?? body) as Job;
  }

  /** `DELETE /jobs/{jobId}`: removes a finished job and its result (a running one is cancelled first). */
  async deleteJob(jobId: string, options: RequestOptions = {}): Promise<void> {
    await this.request<unknown>('DELETE', `/jobs/${encodeURIComponent(jobId)}`, options);
  }

  /** `GET /jobs?status=&type=&page=&limit=`: jobs, newest first. */
  async listJobs(query: ListJobsQuery = {}, options: RequestOptions = {}): Promise<ListJobsResponse> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const qs = params.toString();
    return this.request<ListJobsResponse>('GET', `/jobs${qs ? `?${qs}` : ''}`, options);
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    const headers: Record<string, string> = { ...this.extraHeaders, ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  private async errorOf(response: Response): Promise<ChainsyncError> {
    const text = await response.text().catch(() => '');
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON (a proxy's HTML page, say): keep the text
    }
    return errorFromResponse(response.status, body, response.headers);
  }

  private async request<T>(
    method: string,
    path: string,
    options: RequestOptions & { body?: unknown },
  ): Promise<T> {
    const { signal } = options;
    const headers = this.headers({ Accept: 'application/json' });
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(this.baseUrl + path, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      throw new NetworkError(`${method} ${path}: ${String((err as Error)?.message ?? err)}`, {
        code: 'NETWORK_ERROR',
        status: 0,
        cause: err,
      });
    }
    if (!response.ok) throw await this.errorOf(response);
    if (response.status === 204) return undefined as T;
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      throw new NetworkError(`${method} ${path}: the answer broke off`, { code: 'NETWORK_ERROR', status: 0, cause: err });
    }
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new ChainsyncError(`${method} ${path}: the answer is not JSON`, {
        code: 'INVALID_RESPONSE',
        status: response.status,
        cause: err,
      });
    }
  }
}

/** `createClient({baseUrl, token})`: the same as `new ChainsyncClient(...)`. */
export function createClient(options: ClientOptions = {}): ChainsyncClient {
  return new ChainsyncClient(options);
}
