/**
 * A minimal, streaming GGUF v3 writer (format and sources: ./format.ts).
 *
 * The header (KV + tensor infos) is built in memory (it is small); tensor data
 * is streamed to the file in caller-sized chunks, so files of any size can be
 * written without holding them in memory.
 */
import fs from "node:fs";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_VERSION, alignUp, tensorByteSize, type GgmlType, type GgufLayout, type GgufTensorEntry, type GgufValue } from "./format";
import { ByteBuilder, checkValue, writeValue } from "./encode";
import { GgufDataSink, writeAll } from "./sink";

export * from "./format";

export { GgufDataSink } from "./sink";

export interface GgufWriterOptions {
  /**
   * Data alignment in bytes (power of two). Default 32 (GGUF_DEFAULT_ALIGNMENT).
   * Any other value is recorded as `general.alignment` (uint32), as the spec requires.
   */
  alignment?: number;
}

/**
 * Collects metadata and tensor infos, then streams a GGUF v3 file.
 *
 * ```ts
 * const w = new GgufWriter();
 * w.setString("general.architecture", "llama");
 * w.addTensor("output_norm.weight", [64], GgmlType.F32);
 * const out = await w.open("model.gguf");
 * await out.write(new Uint8Array(256));   // tensor data in declaration order, any chunking
 * await out.close();                      // pads, checks every byte was written
 * ```
 */
export class GgufWriter {
  readonly alignment: number;
  private readonly kv = new Map<string, GgufValue>();
  private readonly tensorList: GgufTensorEntry[] = [];
  private readonly tensorNames = new Set<string>();
  private dataBytes = 0;

  constructor(opts: GgufWriterOptions = {}) {
    const a = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) throw new RangeError(`alignment must be a power of two, got ${a}`);
    this.alignment = a;
    if (a !== GGUF_DEFAULT_ALIGNMENT) this.kv.set("general.alignment", { type: "uint32", value: a });
  }

  /** Sets a metadata key (insertion order is file order). @throws Error on a duplicate key. */
  set(key: string, value: GgufValue): this {
    if (this.kv.has(key)) throw new Error(`duplicate GGUF key: ${key}`);
    if (key === "general.alignment") throw new Error("set general.alignment through the writer's alignment option");
    checkValue(key, value);
    this.kv.set(key, value);
    return this;
  }
  setUint32(key: string, value: number): this {
    return this.set(key, { type: "uint32", value });
  }
  setInt32(key: string, value: number): this {
    return this.set(key, { type: "int32", value });
  }
  setFloat32(key: string, value: number): this {
    return this.set(key, { type: "float32", value });
  }
  setBool(key: string, value: boolean): this {
    return this.set(key, { type: "bool", value });
  }
  setString(key: string, value: string): this {
    return this.set(key, { type: "string", value });
  }
  setStringArray(key: string, value: readonly string[]): this {
    return this.set(key, { type: "string[]", value });
  }
  setFloat32Array(key: string, value: ArrayLike<number>): this {
    return this.set(key, { type: "float32[]", value });
  }
  setInt32Array(key: string, value: ArrayLike<number>): this {
    return this.set(key, { type: "int32[]", value });
  }

  /**
   * Declares a tensor; its data must later be written in declaration order.
   * @param shape ne[0] (innermost) first; ne[0] must be a multiple of the type's block size.
   * @returns the tensor's entry, with its data-section offset and size in bytes.
   */
  addTensor(name: string, shape: readonly number[], type: GgmlType): GgufTensorEntry {
    if (this.tensorNames.has(name)) throw new Error(`duplicate tensor name: ${name}`);
    if (Buffer.byteLength(name, "utf8") >= 64) throw new RangeError(`tensor name too long (GGML_MAX_NAME is 64): ${name}`);
    const nbytes = tensorByteSize(type, shape);
    const entry: GgufTensorEntry = { name, shape: [...shape], type, offset: this.dataBytes, nbytes };
    this.tensorList.push(entry);
    this.tensorNames.add(name);
    this.dataBytes += alignUp(nbytes, this.alignment);
    return entry;
  }

  /** Declared tensors, in file order. */
  get tensors(): readonly GgufTensorEntry[] {
    return this.tensorList;
  }

  /** Metadata keys, in file order. */
  get keys(): readonly string[] {
    return [...this.kv.keys()];
  }

  /** The serialized header: magic, version, counts, KV pairs and tensor infos (no padding). */
  header(): Buffer {
    const b = new ByteBuilder();
    b.u8(0x47); // G
    b.u8(0x47); // G
    b.u8(0x55); // U
    b.u8(0x46); // F
    b.u32(GGUF_VERSION);
    b.i64(this.tensorList.length);
    b.i64(this.kv.size);
    for (const [key, v] of this.kv) {
      b.str(key);
      writeValue(b, v);
    }
    for (const t of this.tensorList) {
      b.str(t.name);
      b.u32(t.shape.length);
      for (const d of t.shape) b.i64(d);
      b.i32(t.type);
      b.u64(t.offset);
    }
    return b.bytes();
  }

  /** Sizes in bytes of the file as currently declared. */
  layout(): GgufLayout {
    const headerBytes = this.header().length;
    const dataOffset = alignUp(headerBytes, this.alignment);
    return { headerBytes, dataOffset, dataBytes: this.dataBytes, fileBytes: dataOffset + this.dataBytes, alignment: this.alignment };
  }

  /**
   * Creates (truncates) `path`, writes the padded header, and returns a sink
   * for the tensor data. No metadata or tensors can be added afterwards.
   */
  async open(path: string): Promise<GgufDataSink> {
    const header = this.header();
    const dataOffset = alignUp(header.length, this.alignment);
    const fh = await fs.promises.open(path, "w");
    try {
      const padded = Buffer.alloc(dataOffset);
      header.copy(padded, 0);
      await writeAll(fh, padded);
    } catch (e) {
      await fh.close();
      throw e;
    }
    return new GgufDataSink(fh, this.tensorList, this.alignment, dataOffset);
  }

  /**
   * Writes the whole file: `produce` is called once per tensor, in order, and
   * must hand exactly `tensor.nbytes` bytes to `write` (in any number of chunks).
   * @returns the file layout (sizes in bytes).
   */
  async writeFile(path: string, produce: (tensor: GgufTensorEntry, write: (chunk: Uint8Array) => Promise<void>) => Promise<void> | void): Promise<GgufLayout> {
    const sink = await this.open(path);
    try {
      for (const t of this.tensorList) {
        const start = sink.filePosition;
        await produce(t, (chunk) => sink.write(chunk));
        const expected = sink.dataOffset + t.offset + alignUp(t.nbytes, this.alignment);
        if (sink.filePosition !== expected) {
          throw new Error(`tensor ${t.name}: producer wrote ${sink.filePosition - start} bytes (with padding), expected ${expected - start}`);
        }
      }
      await sink.close();
    } catch (e) {
      await sink.abort();
      throw e;
    }
    return this.layout();
  }
}
