// The SSE parser on its own: the event-stream grammar (WHATWG HTML), fed in
// chunks split anywhere, as a network delivers them.
import { describe, expect, it } from 'vitest';

import { SseParser, readEventStream, type SseMessage } from '../src/sse.js';

function parse(chunks: string[], lastId = ''): { messages: SseMessage[]; parser: SseParser } {
  const messages: SseMessage[] = [];
  const parser = new SseParser((m) => messages.push(m), lastId);
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return { messages, parser };
}

/** Every way of cutting `text` into two or three chunks. */
function* splits(text: string): Generator<string[]> {
  yield [text];
  for (let i = 0; i <= text.length; i++) {
    yield [text.slice(0, i), text.slice(i)];
    for (let j = i; j <= text.length; j += 7) yield [text.slice(0, i), text.slice(i, j), text.slice(j)];
  }
}

const STREAM =
  '\ufeffretry: 2000\n\n' +
  ': ping\n\n' +
  'id: 3\r\nevent: job\r\ndata: {"id":"a","progress":10}\r\n\r\n' +
  'id: 4\revent: job\rdata: {"id":"a",\rdata: "progress":20}\r\r' +
  ': ping\n' +
  'id: 5\nevent: job\ndata:{"id":"a","progress":100}\n\n' +
  'event: end\ndata: {"status":"completed"}\n\n';

const EXPECTED: SseMessage[] = [
  { event: 'job', data: '{"id":"a","progress":10}', id: '3', retry: 2000 },
  { event: 'job', data: '{"id":"a",\n"progress":20}', id: '4', retry: 2000 },
  { event: 'job', data: '{"id":"a","progress":100}', id: '5', retry: 2000 },
  { event: 'end', data: '{"status":"completed"}', id: '5', retry: 2000 },
];

describe('SseParser', () => {
  it('parses LF, CRLF and CR line ends, comments, multi-line data, ids and retry, however the chunks fall', () => {
    let count = 0;
    for (const chunks of splits(STREAM)) {
      const { messages, parser } = parse(chunks);
      expect(messages, JSON.stringify(chunks)).toEqual(EXPECTED);
      expect(parser.lastId).toBe('5');
      expect(parser.retryMs).toBe(2000);
      count += 1;
    }
    expect(count).toBeGreaterThan(1000);
  });

  it('dispatches "message" for events without a type, keeps the initial last id, ignores unknown fields', () => {
    const { messages } = parse(['data: one\nfoo: bar\nnofield\n\n', 'data\n\n'], '41');
    expect(messages).toEqual([
      { event: 'message', data: 'one', id: '41', retry: undefined },
      { event: 'message', data: '', id: '41', retry: undefined },
    ]);
  });

  it('does not dispatch an event cut off by the end of the stream, nor one without data', () => {
    const { messages, parser } = parse(['id: 7\nevent: job\n\n', 'id: 8\nevent: job\ndata: {"half":']);
    expect(messages).toEqual([]);
    expect(parser.lastId).toBe('8'); // the id field still counts, as in browsers
  });

  it('ignores an id containing NUL and a non-numeric retry', () => {
    const { messages } = parse(['id: 1\nretry: soon\ndata: a\n\nid: 2\0x\ndata: b\n\n']);
    expect(messages.map((m) => [m.id, m.retry])).toEqual([
      ['1', undefined],
      ['1', undefined],
    ]);
  });
});

describe('readEventStream', () => {
  const bytes = (text: string) => new TextEncoder().encode(text);

  it('decodes UTF-8 split inside a character and stops when asked', async () => {
    const text = 'data: caf\u00e9 \u{1F680}\n\ndata: second\n\ndata: never read\n\n';
    const encoded = bytes(text);
    const cut = encoded.indexOf(0xa9); // in the middle of "é"
    const third = bytes(text.slice(0, text.indexOf('data: never'))).length;
    const chunks = [encoded.slice(0, cut), encoded.slice(cut, third), encoded.slice(third)];
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = chunks[pulls++];
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const messages: SseMessage[] = [];
    const parser = new SseParser((m) => messages.push(m));
    await readEventStream(body, parser, undefined, () => messages.length >= 2);
    expect(messages.map((m) => m.data)).toEqual(['caf\u00e9 \u{1F680}', 'second']);
  });

  it('rejects with the abort reason and cancels the body when the signal aborts', async () => {
    let cancelled: unknown;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes('data: x\n\n'));
      },
      cancel(reason) {
        cancelled = reason;
      },
    });
    const controller = new AbortController();
    const parser = new SseParser(() => controller.abort(new Error('stop')));
    await expect(readEventStream(body, parser, controller.signal)).rejects.toThrow('stop');
    const waiting = new ReadableStream<Uint8Array>({ cancel: (reason) => void (cancelled = reason) });
    const second = new AbortController();
    const reading = readEventStream(waiting, new SseParser(() => undefined), second.signal);
    second.abort(new Error('later'));
    await expect(reading).rejects.toThrow('later');
    expect(String(cancelled)).toContain('later');
  });
});
