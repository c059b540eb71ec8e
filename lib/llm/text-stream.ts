/**
 * A stream of generated text: an AsyncIterable of text pieces (each a whole
 * UTF-8 string; multi-byte characters are never split across pieces) plus the
 * final result. Pieces are buffered, so a late or slow reader loses nothing.
 * A piece is usually one token's text; tokens generated less than 2 ms after
 * the previous piece went out share the next piece (a small model makes
 * thousands a second), so a piece waits at most one token's time.
 */
export class TextStream<R> implements AsyncIterable<string> {
  /** Settles when generation ends: the full result, or a GenaiError. */
  readonly result: Promise<R>;
  #queue: string[] = [];
  #done = false;
  #error: unknown = undefined;
  #wake: (() => void) | undefined;

  /** `start` gets a push function for pieces and returns the final result. */
  constructor(start: (push: (piece: string) => void) => Promise<R>) {
    this.result = start((piece) => {
      this.#queue.push(piece);
      this.#notify();
    }).then(
      (r) => {
        this.#done = true;
        this.#notify();
        return r;
      },
      (e: unknown) => {
        this.#done = true;
        this.#error = e;
        this.#notify();
        throw e;
      },
    );
    // Readers that only iterate still see the error; avoid an unhandled rejection on `result`.
    this.result.catch(() => undefined);
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      if (this.#queue.length > 0) {
        yield this.#queue.shift() as string;
        continue;
      }
      if (this.#done) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
    }
  }
}
