// @chainsync/client: the typed client of the chainsync JSON API. The React hook
// lives in '@chainsync/client/react' (src/use-blockchain-sync.ts) so that this
// entry point does not need React.
export * from './async-blockchain-sync.js';
export { SseParser, readEventStream, type SseMessage } from './sse.js';
