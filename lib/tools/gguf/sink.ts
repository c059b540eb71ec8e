/**
 * Streaming of a GGUF file's data section (layout in ./format.ts): tensor
 * bytes in declaration order, each tensor zero-padded to the alignment.
 */
import type fs from "node:fs";
import { alignUp, type GgufTensorEntry } from "./format";

/**
 * Receives tensor data in declaration order and writes it to the file,
 * inserting the zero padding after each tensor. Sizes are in bytes.
 */
export class GgufDataSink {
  private index = 0;
  private inTensor = 0;
  private position: number;
  private closed = false;
  private readonly pad: Buffer;

  constructor(
    private readonly fh: fs.promises.FileHandle,
    private readonly list: readonly GgufTensorEntry[],
    private readonly alignment: number,
    /** Absolute file offset of the data section, in bytes. */
    readonly dataOffset: number,
  ) {
    this.position = dataOffset;
    this.pad = Buffer.alloc(alignment);
    this.skipEmpty();
  }

  /** The tensor the next byte belongs to; undefined when all data has been written. */
  get currentTensor(): GgufTensorEntry | undefined {
    return this.list[this.index];
  }
  /** Bytes already written into the current tensor. */
  get bytesIntoCurrent(): number {
    return this.inTensor;
  }
  /** Absolute file position of the next byte. */
  get filePosition(): number {
    return this.position;
  }

  private skipEmpty(): void {
    while (this.index < this.list.length && this.list[this.index].nbytes === 0) this.index++;
  }

  /**
   * Appends tensor data. A chunk may span tensor boundaries; padding is inserted
   * where a tensor ends. The chunk may be reused by the caller once this resolves.
   * @throws Error when more bytes are written than the tensors declare.
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.closed) throw new Error("GGUF sink is closed");
    let off = 0;
    while (off < chunk.length) {
      const t = this.list[this.index];
      if (!t) throw new Error(`too much tensor data: ${chunk.length - off} bytes beyond the last tensor`);
      const n = Math.min(t.nbytes - this.inTensor, chunk.length - off);
      const expectPos = this.dataOffset + t.offset + this.inTensor;
      if (expectPos !== this.position) throw new Error(`internal: file position ${this.position} != ${expectPos}`);
      await writeAll(this.fh, chunk.subarray(off, off + n));
      this.position += n;
      this.inTensor += n;
      off += n;
      if (this.inTensor === t.nbytes) {
        const padBytes = alignUp(t.nbytes, this.alignment) - t.nbytes;
        if (padBytes > 0) {
          await writeAll(this.fh, this.pad.subarray(0, padBytes));
          this.position += padBytes;
        }
        this.index++;
        this.inTensor = 0;
        this.skipEmpty();
      }
    }
  }

  /** Finishes the file. @throws Error when some declared tensor data is missing. */
  async close(): Promise<void> {
    if (this.closed) return;
    const t = this.list[this.index];
    if (t) {
      await this.abort();
      throw new Error(`missing tensor data: ${t.name} has ${this.inTensor} of ${t.nbytes} bytes (and ${this.list.length - this.index - 1} tensors after it)`);
    }
    this.closed = true;
    await this.fh.close();
  }

  /** Closes the file without checks (the file is left incomplete). */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** Writes all of `data` at the handle's current position. */
export async function writeAll(fh: fs.promises.FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}
