/**
 * A progress line on stderr. On a terminal it is redrawn in place (`\r`, then
 * ESC[K to erase the rest of the line). Anywhere else (a pipe, a log file,
 * CI) it writes plain lines with no control characters: one per 10 % of
 * progress and the last, so a log keeps the history without redraw garbage.
 */
export class ProgressLine {
  readonly #out: NodeJS.WritableStream & { isTTY?: boolean };
  #decile = -1;
  #drawn = false;

  constructor(out: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr) {
    this.#out = out;
  }

  /** `fraction` in [0, 1]; `text` the whole line. */
  update(fraction: number, text: string): void {
    if (this.#out.isTTY) {
      this.#out.write(`\r${text}\x1b[K`);
      this.#drawn = true;
      return;
    }
    const decile = fraction >= 1 ? 10 : Math.max(0, Math.floor(fraction * 10));
    if (decile <= this.#decile) return;
    this.#decile = decile;
    this.#out.write(`${text}\n`);
  }

  /** Ends a redrawn line (a newline on a terminal; nothing otherwise). */
  end(): void {
    if (this.#drawn) this.#out.write("\n");
    this.#drawn = false;
  }
}
