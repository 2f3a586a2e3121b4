// The spec's JavaScript client (ASYNC-BLOCKCHAIN-SYNC.md, "Usage Examples" →
// "JavaScript Client"), as written there but for BASE prepended to each path
// so that it runs in Node 20 (whose fetch needs absolute URLs):
//
//     CHAINSYNC_URL=http://127.0.0.1:8080 node tests/js/spec-polling-example.mjs
const BASE = process.env.CHAINSYNC_URL ?? 'http://127.0.0.1:8080';

// Start sync job
const response = await fetch(BASE + '/api/blockchain/sync', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ blocksBack: 1000, isFullSync: false })
});

const { jobId } = await response.json();

// Poll status
const pollStatus = async () => {
  const statusRes = await fetch(BASE + `/api/blockchain/sync/status/${jobId}`);
  const { job } = await statusRes.json();
  
  console.log(`Progress: ${job.progress}% - ${job.message}`);
  
  if (job.status === 'completed') {
    // Get result
    const resultRes = await fetch(BASE + `/api/blockchain/sync/result/${jobId}`);
    const result = await resultRes.json();
    console.log('Sync completed:', result);
  } else if (job.status === 'running' || job.status === 'pending') {
    setTimeout(pollStatus, 2000); // Poll every 2 seconds
  } else if (job.status === 'failed') {
    console.error('Job failed:', job.error);
  }
};

setTimeout(pollStatus, 1000);
