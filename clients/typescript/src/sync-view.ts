// SyncView: the copy of the records an application keeps, equal to the chain
// after every result (docs/reorgs.md). Apply the results in order: a full
// sync's result (one that continues from no cursor, `after: null`) replaces
// the view; an incremental's upserts its records by id and deletes its
// `dropped` ids. The view is plain JSON (it can be stored and read back).

import {
  ChainsyncClient,
  ChainsyncError,
  RECORD_KINDS,
  ReorgTooDeepError,
  type Cursor,
  type Petition,
  type Proposal,
  type Report,
  type SyncResult,
  type SyncResultResponse,
  type WaitOptions,
} from './async-blockchain-sync.js';

/** Per kind, id → record, built only from results; `cursor` is the last result applied (null: none). */
export interface SyncView {
  records: {
    proposals: Record<string, Proposal>;
    petitions: Record<string, Petition>;
    reports: Record<string, Report>;
  };
  cursor: Cursor | null;
}

/** An empty view: its first result must be a full sync's. */
export function createView(): SyncView {
  return { records: { proposals: {}, petitions: {}, reports: {} }, cursor: null };
}

/**
 * Applies a whole result (not a page) to the view, in place, and returns the view. A full sync's
 * result replaces the records; an incremental's must continue from the view's cursor, else this
 * throws a ChainsyncError (`RESULT_OUT_OF_ORDER`: a result was skipped, or is another consumer's).
 */
export function applyResult(view: SyncView, result: SyncResult): SyncView {
  if (RECORD_KINDS.some((kind) => result[kind].length !== result.totals[kind])) {
    throw new ChainsyncError(`the result of job ${result.cursor.jobId} is a page: apply the whole result`, {
      code: 'RESULT_IS_A_PAGE',
      status: 0,
    });
  }
  if (result.after === null) {
    view.records = createView().records;
  } else if (result.after !== view.cursor?.jobId) {
    throw new ChainsyncError(
      `the result of job ${result.cursor.jobId} continues from job ${result.after}, but this view stands at ` +
        `${view.cursor?.jobId ?? 'no result'}: start the sync with after: view.cursor`,
      { code: 'RESULT_OUT_OF_ORDER', status: 0, details: { after: result.after, cursor: view.cursor?.jobId ?? null } },
    );
  }
  for (const kind of RECORD_KINDS) {
    const held: Record<string, { id: string }> = view.records[kind];
    for (const record of result[kind]) held[record.id] = record;
    for (const id of result.dropped[kind]) delete held[id];
  }
  view.cursor = result.cursor;
  return view;
}

/**
 * Runs the next sync of the view and applies it: a full sync for an empty view, else an incremental
 * after its cursor; after REORG_TOO_DEEP, a full sync that replaces the view. Resolves with the result
 * applied; rejects as `waitForResult` does for any other failure (the view is then unchanged).
 */
export async function syncView(client: ChainsyncClient, view: SyncView, options: WaitOptions = {}): Promise<SyncResult> {
  const full = async () => (await client.startSync({ isFullSync: true }, options)).jobId;
  let jobId = view.cursor ? (await client.startSync({ after: view.cursor }, options)).jobId : await full();
  let done: SyncResultResponse;
  try {
    done = await client.waitForResult(jobId, options);
  } catch (err) {
    if (!(err instanceof ReorgTooDeepError)) throw err;
    jobId = await full();
    done = await client.waitForResult(jobId, options);
  }
  applyResult(view, done.result);
  return done.result;
}
