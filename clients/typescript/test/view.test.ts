// The view an application keeps (src/sync-view.ts): applyResult's rule on
// results made here, then syncView against the real bridge (a full sync, then
// incrementals after the view's cursor). Reorgs on a real chain are checked by
// tests/test_client.py (the Python SyncView, the same rule) on a devnet whose
// branches it switches; this suite's devnet is shared, so it leaves it as is.
import { describe, expect, it } from 'vitest';

import {
  ChainsyncError,
  applyResult,
  createClient,
  createView,
  syncView,
  type Proposal,
  type SyncResult,
} from '../src/index.js';
import { bridgeUrl } from './helpers.js';

function proposal(id: string, yesVotes = '0'): Proposal {
  return {
    id,
    titleCid: `title-${id}`,
    shortDescriptionCid: '',
    descriptionInDetailsCid: '',
    yesVotes,
    noVotes: '0',
    creator: '0x0000000000000000000000000000000000000001',
    activeStatus: true,
    expiredDate: '0',
    categoryId: '1',
    createdAt: '0',
    updatedAt: '0',
    removed: false,
    created: null,
  };
}

function result(jobId: string, after: string | null, proposals: Proposal[], dropped: string[] = []): SyncResult {
  return {
    proposals,
    petitions: [],
    reports: [],
    fromBlock: 1,
    toBlock: 10,
    toBlockHash: '0xab',
    chainId: 31337,
    eventsCount: 0,
    processingTime: 1,
    totals: { proposals: proposals.length, petitions: 0, reports: 0 },
    cursor: { jobId, toBlock: 10, toBlockHash: '0xab' },
    after,
    reorg: dropped.length ? { forkBlock: 8, droppedBlocks: 3 } : null,
    dropped: { proposals: dropped, petitions: [], reports: [] },
  };
}

describe('applyResult', () => {
  it('upserts by id, deletes the dropped ids, keeps the cursor; a full sync replaces the view', () => {
    const view = createView();
    expect(applyResult(view, result('a', null, [proposal('1'), proposal('2'), proposal('3')]))).toBe(view);
    applyResult(view, result('b', 'a', [proposal('2', '5'), proposal('4')], ['3']));
    expect(Object.keys(view.records.proposals).sort()).toEqual(['1', '2', '4']);
    expect(view.records.proposals['2'].yesVotes).toBe('5');
    expect(view.cursor).toEqual({ jobId: 'b', toBlock: 10, toBlockHash: '0xab' });
    expect(JSON.parse(JSON.stringify(view))).toEqual(view); // plain JSON: it can be stored and read back

    applyResult(view, result('c', null, [proposal('9')]));
    expect(Object.keys(view.records.proposals)).toEqual(['9']);
    expect(view.cursor?.jobId).toBe('c');
  });

  it('refuses a result that does not continue from the view, and a page', () => {
    const view = applyResult(createView(), result('a', null, [proposal('1')]));
    applyResult(view, result('b', 'a', []));
    const skipped = (() => {
      try {
        applyResult(view, result('c', 'a', [proposal('2')])); // b's changes would be lost
      } catch (err) {
        return err;
      }
    })();
    expect(skipped).toBeInstanceOf(ChainsyncError);
    expect(skipped).toMatchObject({ code: 'RESULT_OUT_OF_ORDER', details: { after: 'a', cursor: 'b' } });
    expect(() => applyResult(createView(), result('d', 'b', []))).toThrow(/no result/);
    const page = { ...result('e', 'b', [proposal('2')]), totals: { proposals: 2, petitions: 0, reports: 0 } };
    expect(() => applyResult(view, page)).toThrow(/page/);
    expect(Object.keys(view.records.proposals)).toEqual(['1']);
    expect(view.cursor?.jobId).toBe('b');
  });
});

describe('syncView against the bridge', () => {
  it('an empty view takes a full sync, then incrementals after its cursor', async () => {
    const client = createClient({ baseUrl: bridgeUrl() });
    const view = createView();
    const full = await syncView(client, view, { intervalMs: 50 });
    expect(full.after).toBeNull();
    expect(view.cursor).toEqual(full.cursor);
    for (const kind of ['proposals', 'petitions', 'reports'] as const) {
      expect(Object.keys(view.records[kind]).length).toBe(full.totals[kind]);
      expect(full.totals[kind]).toBeGreaterThan(0);
    }
    const before = structuredClone(view.records);

    const next = await syncView(client, view, { intervalMs: 50 });
    expect(next.after).toBe(full.cursor.jobId);
    expect(next.reorg).toBeNull();
    expect(view.cursor).toEqual(next.cursor);
    for (const kind of ['proposals', 'petitions', 'reports'] as const) {
      const expected = { ...before[kind], ...Object.fromEntries(next[kind].map((r) => [r.id, r])) };
      expect(view.records[kind]).toEqual(expected);
    }
  });
});
