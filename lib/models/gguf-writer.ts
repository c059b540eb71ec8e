/**
 * A minimal, streaming GGUF v3 writer.
 *
 * Format source: the GGUF specification, `docs/gguf.md` in the ggml repository
 * (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md; llama.cpp vendors
 * ggml, and its reader/writer is `deps/llama.cpp/ggml/src/gguf.cpp`, layout
 * summary at the top of `ggml/include/gguf.h`). Block layouts of the quantized
 * types are in `ggml/src/ggml-common.h` (`block_q8_0`, `block_q4_0`).
 *
 * File layout (all integers little-endian):
 *   1. magic "GGUF" (4 bytes), version uint32 = 3,
 *      tensor count int64, metadata KV count int64;
 *   2. metadata KV pairs: key (string), value type (uint32 enum), value;
 *      strings are uint64 byte length + UTF-8 bytes (no terminator);
 *      arrays are item type (uint32) + uint64 count + items;
 *   3. tensor infos: name (string), n_dims uint32, ne[n_dims] int64
 *      (ne[0] is the innermost, contiguous dimension), ggml type int32,
 *      offset uint64 relative to the start of the data section;
 *   4. zero padding to `alignment` bytes (from the start of the file);
 *   5. the data section: each tensor's bytes, each followed by zero padding to
 *      `alignment`, so tensor i starts at the sum of the padded sizes before it
 *      (gguf.cpp rejects any other offset).
 *
 * The alignment is `general.alignment` (uint32, power of two) when that key is
 * present, otherwise 32 bytes (GGUF_DEFAULT_ALIGNMENT).
 *
 * The header (KV + tensor infos) is built in memory (it is small); tensor data
 * is streamed to the file in caller-sized chunks, so files of any size can be
 * written without holding them in memory.
 */
import fs from "node:fs";

/** GGUF metadata value types (gguf.h `enum gguf_type`). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml tensor types this writer knows the block layout of (ggml.h `enum ggml_type`). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
}

/** Block geometry of a ggml type: `blockSize` elements are stored in `typeSize` bytes. */
export interface GgmlTypeTraits {
  name: string;
  /** Elements per block. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

const TYPE_TRAITS: Record<GgmlType, GgmlTypeTraits> = {
  [GgmlType.F32]: { name: "f32", blockSize: 1, typeSize: 4 },
  [GgmlType.F16]: { name: "f16", blockSize: 1, typeSize: 2 },
  // block_q4_0: ggml_half d; uint8_t qs[16]  (32 4-bit values)
  [GgmlType.Q4_0]: { name: "q4_0", blockSize: 32, typeSize: 2 + 16 },
  // block_q8_0: ggml_half d; int8_t qs[32]
  [GgmlType.Q8_0]: { name: "q8_0", blockSize: 32, typeSize: 2 + 32 },
};

/** Block geometry of `type`. */
export function ggmlTypeTraits(type: GgmlType): GgmlTypeTraits {
  const t = TYPE_TRAITS[type];
  if (!t) throw new RangeError(`unsupported ggml type ${String(type)}`);
  return t;
}

/** The GGUF default data alignment in bytes (GGUF_DEFAULT_ALIGNMENT). */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** The GGUF version this writer produces. */
export const GGUF_VERSION = 3;
/** The 4-byte file magic. */
export const GGUF_MAGIC = "GGUF";

/** `n` rounded up to a multiple of `alignment` (a power of two), in bytes. */
export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/**
 * Bytes of tensor data (unpadded) for `shape` (ne[0] first) stored as `type`.
 * @throws RangeError when ne[0] is not a multiple of the type's block size.
 */
export function tensorByteSize(type: GgmlType, shape: readonly number[]): number {
  const { blockSize, typeSize } = ggmlTypeTraits(type);
  if (shape.length < 1 || shape.length > 4) throw new RangeError(`tensor must have 1..4 dimensions, got ${shape.length}`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d <= 0) throw new RangeError(`invalid tensor dimension ${d}`);
  }
  if (shape[0] % blockSize !== 0) {
    throw new RangeError(`ne[0]=${shape[0]} is not a multiple of the ${ggmlTypeTraits(type).name} block size ${blockSize}`);
  }
  const rows = shape.slice(1).reduce((a, b) => a * b, 1);
  return (shape[0] / blockSize) * typeSize * rows;
}

/** A metadata value with its GGUF type. */
export type GgufValue =
  | { type: "uint32"; value: number }
  | { type: "int32"; value: number }
  | { type: "float32"; value: number }
  | { type: "uint64"; value: bigint | number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "string[]"; value: readonly string[] }
  | { type: "float32[]"; value: ArrayLike<number> }
  | { type: "int32[]"; value: ArrayLike<number> };

/** A tensor as laid out in the file. */
export interface GgufTensorEntry {
  name: string;
  /** Dimensions, ne[0] (innermost, contiguous) first, as in ggml/GGUF. */
  shape: readonly number[];
  type: GgmlType;
  /** Offset in bytes from the start of the data section (a multiple of the alignment). */
  offset: number;
  /** Size in bytes of the tensor's data, without padding. */
  nbytes: number;
}

/** Sizes of the file to be written, in bytes. */
export interface GgufLayout {
  /** Bytes of magic + counts + KV + tensor infos, before padding. */
  headerBytes: number;
  /** Absolute file offset of the data section (headerBytes rounded up to the alignment). */
  dataOffset: number;
  /** Bytes of the data section, every tensor padded to the alignment. */
  dataBytes: number;
  /** Total file size: dataOffset + dataBytes. */
  fileBytes: number;
  /** Alignment in bytes. */
  alignment: number;
}

export interface GgufWriterOptions {
  /**
   * Data alignment in bytes (power of two). Default 32 (GGUF_DEFAULT_ALIGNMENT).
   * Any other value is recorded as `general.alignment` (uint32), as the spec requires.
   */
  alignment?: number;
}

/** Little-endian byte builder for the header. */
class ByteBuilder {
  private buf = Buffer.alloc(64 * 1024);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f32(v: number): void {
    this.ensure(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  u64(v: bigint | number): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  i64(v: bigint | number): void {
    this.ensure(8);
    this.buf.writeBigInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  str(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    this.ensure(n);
    this.buf.write(s, this.length, n, "utf8");
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
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
  async writeFile(
    path: string,
    produce: (tensor: GgufTensorEntry, write: (chunk: Uint8Array) => Promise<void>) => Promise<void> | void,
  ): Promise<GgufLayout> {
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

async function writeAll(fh: fs.promises.FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

function checkValue(key: string, v: GgufValue): void {
  const bad = (why: string): never => {
    throw new RangeError(`GGUF key ${key}: ${why}`);
  };
  switch (v.type) {
    case "uint32":
      if (!Number.isInteger(v.value) || v.value < 0 || v.value > 0xffffffff) bad(`not a uint32: ${v.value}`);
      break;
    case "int32":
      if (!Number.isInteger(v.value) || v.value < -0x80000000 || v.value > 0x7fffffff) bad(`not an int32: ${v.value}`);
      break;
    case "uint64":
      if (BigInt(v.value) < 0n || BigInt(v.value) > 0xffffffffffffffffn) bad(`not a uint64: ${v.value}`);
      break;
    case "int32[]":
      for (let i = 0; i < v.value.length; i++) {
        const x = v.value[i];
        if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) bad(`item ${i} is not an int32: ${x}`);
      }
      break;
    default:
      break;
  }
}

function writeValue(b: ByteBuilder, v: GgufValue): void {
  switch (v.type) {
    case "uint32":
      b.u32(GgufValueType.UINT32);
      b.u32(v.value);
      return;
    case "int32":
      b.u32(GgufValueType.INT32);
      b.i32(v.value);
      return;
    case "float32":
      b.u32(GgufValueType.FLOAT32);
      b.f32(v.value);
      return;
    case "uint64":
      b.u32(GgufValueType.UINT64);
      b.u64(v.value);
      return;
    case "bool":
      b.u32(GgufValueType.BOOL);
      b.u8(v.value ? 1 : 0);
      return;
    case "string":
      b.u32(GgufValueType.STRING);
      b.str(v.value);
      return;
    case "string[]":
      b.u32(GgufValueType.ARRAY);
      b.u32(GgufValueType.STRING);
      b.u64(v.value.length);
      for (const s of v.value) b.str(s);
      return;
    case "float32[]":
      b.u32(GgufValueType.ARRAY);
      b.u32(GgufValueType.FLOAT32);
      b.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) b.f32(v.value[i]);
      return;
    case "int32[]":
      b.u32(GgufValueType.ARRAY);
      b.u32(GgufValueType.INT32);
      b.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) b.i32(v.value[i]);
      return;
  }
}
