// Importing the package does nothing: no request, no timer, no listener.
import { afterEach, expect, it, vi } from 'vitest';

afterEach(() => vi.restoreAllMocks());

it('importing the client and the hook starts no request, timer or listener', async () => {
  const spies = [
    vi.spyOn(globalThis, 'fetch'),
    vi.spyOn(globalThis, 'setTimeout'),
    vi.spyOn(globalThis, 'setInterval'),
    vi.spyOn(globalThis, 'queueMicrotask'),
    vi.spyOn(process, 'on'),
  ];
  vi.resetModules();
  const client = await import('../src/index.js');
  const hook = await import('../src/use-blockchain-sync.js');
  expect(typeof client.createClient).toBe('function');
  expect(typeof hook.useBlockchainSync).toBe('function');
  for (const spy of spies) expect(spy).not.toHaveBeenCalled();
});
