// A server-sent events parser over a fetch body (WHATWG HTML, "event stream
// interpretation"), so that `watch` works the same in Node 20 and browsers
// without EventSource (which can neither send an Authorization header nor be
// aborted with an AbortSignal).

/** One dispatched event. `id` is the last event id seen so far ('' when none). */
export interface SseMessage {
  event: string;
  data: string;
  id: string;
  /** The `retry:` value most recently sent by the server, in ms, if any. */
  retry?: number;
}

/**
 * Incremental parser: feed it text chunks as they arrive (they may split
 * lines, even CRLF pairs, anywhere); it calls `onMessage` for each complete
 * event. Comments (`: ping`) and events without data are not dispatched.
 */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private eventType = '';
  private lastEventId = '';
  private retry: number | undefined;
  private sawCr = false;
  private first = true;

  constructor(
    private readonly onMessage: (message: SseMessage) => void,
    initialLastEventId = '',
  ) {
    this.lastEventId = initialLastEventId;
  }

  /** The id of the last event seen (the value to send as Last-Event-ID). */
  get lastId(): string {
    return this.lastEventId;
  }

  get retryMs(): number | undefined {
    return this.retry;
  }

  feed(chunk: string): void {
    if (chunk.length === 0) return; // keeps a pending CR pending
    if (this.first) {
      this.first = false;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    let text = chunk;
    if (this.sawCr && text.startsWith('\n')) text = text.slice(1); // the LF of a CRLF split across chunks
    this.sawCr = false;
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.buffer.slice(start, i));
      if (c === 13) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.sawCr = true;
        }
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** End of stream: an event not followed by a blank line is discarded, as the spec says. */
  end(): void {
    this.buffer = '';
    this.data = [];
    this.eventType = '';
  }

  private line(line: string): void {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return; // comment, e.g. a keep-alive ping
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  private dispatch(): void {
    const data = this.data;
    const eventType = this.eventType;
    this.data = [];
    this.eventType = '';
    if (data.length === 0) return;
    this.onMessage({
      event: eventType || 'message',
      data: data.join('\n'),
      id: this.lastEventId,
      retry: this.retry,
    });
  }
}

/**
 * Reads a fetch response body as server-sent events until it ends, until
 * `shouldStop()` says so after a chunk (the rest is cancelled), or until the
 * signal aborts (then it rejects with the signal's reason).
 */
export async function readEventStream(
  body: ReadableStream<Uint8Array>,
  parser: SseParser,
  signal?: AbortSignal,
  shouldStop?: () => boolean,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => undefined);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const { done, value } = await reader.read();
      if (signal?.aborted) throw signal.reason;
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      if (shouldStop?.()) {
        await reader.cancel().catch(() => undefined);
        return;
      }
    }
    parser.feed(decoder.decode());
    parser.end();
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock?.();
  }
}
