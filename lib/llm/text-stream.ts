/** A buffered queue read by one async iterator that ends when the stream does (or throws its error). */
class Feed<T> {
  #items: T[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown = undefined;

  push(item: T): void {
    this.#items.push(item);
    this.#notify();
  }

  end(error?: unknown): void {
    this.#ended = true;
    this.#error = error;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async *read(): AsyncGenerator<T> {
    for (;;) {
      if (this.#items.length > 0) {
        yield this.#items.shift() as T;
        continue;
      }
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
    }
  }
}

/**
 * A stream of generated text: an AsyncIterable of text pieces (each a whole
 * UTF-8 string; multi-byte characters are never split across pieces) plus the
 * final result. Pieces are buffered, so a late or slow reader loses nothing.
 * A piece is usually one token's text; tokens generated less than 2 ms after
 * the previous piece went out share the next piece (a small model makes
 * thousands a second), so a piece waits at most one token's time.
 *
 * A chat stream also has typed events (`events()`: content, reasoning and
 * tool-call deltas, see ChatEvent), buffered apart from the pieces: either
 * or both may be read.
 */
export class TextStream<R, E = never> implements AsyncIterable<string> {
  /** Settles when generation ends: the full result, or a GenaiError. */
  readonly result: Promise<R>;
  readonly #pieces = new Feed<string>();
  readonly #events = new Feed<E>();

  /** `start` gets a push function for pieces (and one for events) and returns the final result. */
  constructor(start: (push: (piece: string) => void, pushEvent: (event: E) => void) => Promise<R>) {
    this.result = start(
      (piece) => this.#pieces.push(piece),
      (event) => this.#events.push(event),
    ).then(
      (r) => {
        this.#pieces.end();
        this.#events.end();
        return r;
      },
      (e: unknown) => {
        this.#pieces.end(e);
        this.#events.end(e);
        throw e;
      },
    );
    // Readers that only iterate still see the error; avoid an unhandled rejection on `result`.
    this.result.catch(() => undefined);
  }

  /** The typed events (a chat's content, reasoning and tool-call deltas), in order; may be read once. */
  events(): AsyncIterable<E> {
    return this.#events.read();
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return this.#pieces.read();
  }
}
