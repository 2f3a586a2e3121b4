// @vitest-environment jsdom
// The examples of docs/typescript-client.md, run as written (the bridge URL
// swapped for the test's): each `<!-- example: NAME ... -->` code block is
// written to test/.doc-examples/NAME, type-checked with tsc, then imported
// (a .ts example runs on import and must print what its `prints:` says) or
// rendered (a .tsx example exports the component its `renders:` names).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { createElement, type ComponentType } from 'react';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { bridgeUrl, slowBridgeUrl } from './helpers.js';

// Paths from strings: in jsdom, URL is jsdom's, which node:url does not take.
const TESTS = dirname(fileURLToPath(import.meta.url));
const PACKAGE = join(TESTS, '..');
const DOC = join(TESTS, '..', '..', '..', 'docs', 'typescript-client.md');
const OUT = join(TESTS, '.doc-examples');
const DOC_URL = 'http://127.0.0.1:8080';

interface Example {
  name: string;
  bridge: 'fast' | 'slow';
  prints?: RegExp;
  renders?: string;
  code: string;
}

function examples(): Example[] {
  const text = readFileSync(DOC, 'utf8');
  const found: Example[] = [];
  const pattern = /<!-- example: (\S+)((?: \w+: (?:\/.*?\/|\S+))*) -->\n```tsx?\n([\s\S]*?)```/g;
  for (const match of text.matchAll(pattern)) {
    const attrs = Object.fromEntries([...match[2].matchAll(/ (\w+): (\/.*?\/(?= \w+:|$)|\S+)/g)].map((m) => [m[1], m[2]]));
    found.push({
      name: match[1],
      bridge: attrs.bridge === 'slow' ? 'slow' : 'fast',
      prints: attrs.prints ? new RegExp(attrs.prints.slice(1, -1)) : undefined,
      renders: attrs.renders,
      code: match[3],
    });
  }
  return found;
}

const ALL = examples();

beforeAll(() => {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  for (const example of ALL) {
    const url = example.bridge === 'slow' ? slowBridgeUrl() : bridgeUrl();
    writeFileSync(join(OUT, example.name), `// Generated from docs/typescript-client.md by test/docs.test.tsx\n${example.code.replaceAll(DOC_URL, url)}`);
  }
});

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

describe('docs/typescript-client.md', () => {
  it('has its examples, and they type-check', () => {
    expect(ALL.map((e) => e.name)).toEqual(['quickstart.ts', 'view.ts', 'watch.ts', 'errors.ts', 'jobs.ts', 'SyncButton.tsx']);
    for (const example of ALL) expect(example.prints ?? example.renders, example.name).toBeTruthy();
    try {
      execFileSync(join(PACKAGE, 'node_modules', '.bin', 'tsc'), ['--noEmit', '-p', 'tsconfig.examples.json'], {
        cwd: PACKAGE,
        encoding: 'utf8',
        timeout: 120_000,
      });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(`tsc found errors in the docs' examples:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  });

  for (const example of ALL.filter((e) => e.prints)) {
    it(`${example.name} runs and prints ${example.prints}`, async () => {
      const lines: string[] = [];
      vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void lines.push(args.join(' ')));
      const errors: string[] = [];
      vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void errors.push(args.join(' ')));
      await import(/* @vite-ignore */ join(OUT, example.name));
      expect(errors).toEqual([]);
      expect(lines.some((line) => example.prints!.test(line)), lines.join('\n')).toBe(true);
    });
  }

  for (const example of ALL.filter((e) => e.renders)) {
    it(`${example.name} renders ${example.renders}, which syncs on a click`, async () => {
      const module = (await import(/* @vite-ignore */ join(OUT, example.name))) as Record<string, ComponentType<{ baseUrl?: string }>>;
      render(createElement(module[example.renders!], { baseUrl: bridgeUrl() }));
      expect(screen.getByRole('status').textContent).toBe('idle: ');
      fireEvent.click(screen.getByRole('button', { name: 'Sync' }));
      await screen.findByText(/^\d+ proposals up to block \d+$/, undefined, { timeout: 30_000 });
      expect(screen.getByRole('status').textContent).toMatch(/^completed: /);
      expect(screen.queryByRole('alert')).toBeNull();
    });
  }
});
