// @chainsync/client: the typed client of the chainsync JSON API, and the view
// an application keeps (src/sync-view.ts). The React hook lives in
// '@chainsync/client/react' (src/use-blockchain-sync.ts) so that this entry
// point does not need React.
export * from './async-blockchain-sync.js';
export { applyResult, createView, syncView, type SyncView } from './sync-view.js';
export { SseParser, readEventStream, type SseMessage } from './sse.js';
