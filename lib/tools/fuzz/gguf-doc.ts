/**
 * A lossless, structure-aware view of a GGUF file for the fuzzer: every KV
 * pair with its raw GGUF type, every tensor info, the data section, and the
 * byte offset of every count, length, type, dimension and offset field, so a
 * mutation can either rewrite one field in place (bad counts, lengths, types)
 * or edit the structure and re-serialize (bad metadata values, alignments,
 * duplicate tokens). Layout: ../gguf/format.ts; reader:
 * deps/llama.cpp/ggml/src/gguf.cpp.
 */
import { GgufValueType } from "../gguf/format";

/** A scalar or array metadata value with its exact GGUF type. */
export type RawScalar = number | bigint | boolean | string;
export type RawValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: RawScalar }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; items: RawScalar[] };

export interface RawKv {
  key: string;
  value: RawValue;
}

export interface RawTensor {
  name: string;
  /** ne[0] first. */
  dims: bigint[];
  /** ggml type id (may be invalid on purpose). */
  type: number;
  /** Offset relative to the data section. */
  offset: bigint;
}

/** A fixed-width integer field of the header, for in-place mutation. */
export interface HeaderField {
  /** What it is: "n_tensors", "kv[3].type", "tensor[5].dim[1]", "kv[0].items[7].len", ... */
  label: string;
  kind: "version" | "count" | "str_len" | "kv_type" | "arr_type" | "arr_len" | "n_dims" | "dim" | "tensor_type" | "tensor_offset";
  /** Absolute byte offset. */
  at: number;
  width: 4 | 8;
}

export interface GgufDoc {
  version: number;
  kv: RawKv[];
  tensors: RawTensor[];
  /** The alignment the file was laid out with. */
  alignment: number;
  /** Absolute offset of the data section in the original file. */
  dataOffset: number;
  /** The data section, as read. */
  data: Buffer;
  /** Bytes of header before padding. */
  headerBytes: number;
  fields: HeaderField[];
}

const SCALAR_SIZE: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

/** Parses a well-formed GGUF (the fuzzer's seed file). @throws Error on a malformed file. */
export function parseGguf(buf: Buffer): GgufDoc {
  let p = 0;
  const fields: HeaderField[] = [];
  const need = (n: number) => {
    if (p + n > buf.length) throw new Error(`GGUF truncated at ${p}`);
  };
  const u32 = (label?: string, kind?: HeaderField["kind"]) => {
    need(4);
    if (label && kind) fields.push({ label, kind, at: p, width: 4 });
    const v = buf.readUInt32LE(p);
    p += 4;
    return v;
  };
  const u64 = (label?: string, kind?: HeaderField["kind"]) => {
    need(8);
    if (label && kind) fields.push({ label, kind, at: p, width: 8 });
    const v = buf.readBigUInt64LE(p);
    p += 8;
    return v;
  };
  const str = (label?: string) => {
    const n = Number(u64(label, label ? "str_len" : undefined));
    need(n);
    const s = buf.toString("utf8", p, p + n);
    p += n;
    return s;
  };
  const scalar = (t: GgufValueType, label?: string): RawScalar => {
    switch (t) {
      case GgufValueType.UINT8:
        need(1);
        return buf.readUInt8(p++);
      case GgufValueType.INT8:
        need(1);
        return buf.readInt8(p++);
      case GgufValueType.UINT16:
        need(2);
        p += 2;
        return buf.readUInt16LE(p - 2);
      case GgufValueType.INT16:
        need(2);
        p += 2;
        return buf.readInt16LE(p - 2);
      case GgufValueType.UINT32:
        return u32();
      case GgufValueType.INT32:
        need(4);
        p += 4;
        return buf.readInt32LE(p - 4);
      case GgufValueType.FLOAT32:
        need(4);
        p += 4;
        return buf.readFloatLE(p - 4);
      case GgufValueType.BOOL:
        need(1);
        return buf.readUInt8(p++) !== 0;
      case GgufValueType.STRING:
        return str(label);
      case GgufValueType.UINT64:
        return u64();
      case GgufValueType.INT64:
        need(8);
        p += 8;
        return buf.readBigInt64LE(p - 8);
      case GgufValueType.FLOAT64:
        need(8);
        p += 8;
        return buf.readDoubleLE(p - 8);
      default:
        throw new Error(`bad GGUF value type ${t}`);
    }
  };

  need(4);
  if (buf.toString("latin1", 0, 4) !== "GGUF") throw new Error("not GGUF");
  p = 4;
  const version = u32("version", "version");
  const nTensors = Number(u64("n_tensors", "count"));
  const nKv = Number(u64("n_kv", "count"));
  const kv: RawKv[] = [];
  for (let i = 0; i < nKv; i++) {
    const key = str(`kv[${i}].key.len`);
    const type = u32(`kv[${i}].type`, "kv_type") as GgufValueType;
    if (type === GgufValueType.ARRAY) {
      const itemType = u32(`kv[${i}].arr_type`, "arr_type") as GgufValueType;
      const n = Number(u64(`kv[${i}].arr_len`, "arr_len"));
      const items: RawScalar[] = [];
      for (let j = 0; j < n; j++) items.push(scalar(itemType, itemType === GgufValueType.STRING ? `kv[${i}].items[${j}].len` : undefined));
      kv.push({ key, value: { type, itemType, items } });
    } else {
      kv.push({ key, value: { type, value: scalar(type, `kv[${i}].value.len`) } as RawValue });
    }
  }
  const tensors: RawTensor[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str(`tensor[${i}].name.len`);
    const nDims = u32(`tensor[${i}].n_dims`, "n_dims");
    const dims: bigint[] = [];
    for (let d = 0; d < nDims; d++) dims.push(u64(`tensor[${i}].dim[${d}]`, "dim"));
    const type = u32(`tensor[${i}].type`, "tensor_type");
    const offset = u64(`tensor[${i}].offset`, "tensor_offset");
    tensors.push({ name, dims, type, offset });
  }
  const al = kv.find((k) => k.key === "general.alignment");
  const alignment = al && al.value.type === GgufValueType.UINT32 ? Number(al.value.value) : 32;
  const headerBytes = p;
  const dataOffset = Math.ceil(p / alignment) * alignment;
  return { version, kv, tensors, alignment, dataOffset, data: buf.subarray(dataOffset), headerBytes, fields };
}

/** Bytes of one tensor's data: ggml_nbytes for the types the fuzzer lays out (others: the original extent). */
export function tensorDataBytes(type: number, dims: readonly bigint[]): bigint | undefined {
  const n = dims.reduce((a, b) => a * b, 1n);
  const row = dims[0] ?? 1n;
  switch (type) {
    case 0:
      return n * 4n; // F32
    case 1:
    case 30:
      return n * 2n; // F16, BF16
    case 2:
      return row % 32n === 0n ? (n / 32n) * 18n : undefined; // Q4_0
    case 8:
      return row % 32n === 0n ? (n / 32n) * 34n : undefined; // Q8_0
    default:
      return undefined;
  }
}

function writeScalar(b: Writer, t: GgufValueType, v: RawScalar): void {
  switch (t) {
    case GgufValueType.UINT8:
      b.raw(1, (buf, at) => buf.writeUInt8(Number(v) & 0xff, at));
      return;
    case GgufValueType.INT8:
      b.raw(1, (buf, at) => buf.writeInt8(((Number(v) + 128) & 0xff) - 128, at));
      return;
    case GgufValueType.UINT16:
      b.raw(2, (buf, at) => buf.writeUInt16LE(Number(v) & 0xffff, at));
      return;
    case GgufValueType.INT16:
      b.raw(2, (buf, at) => buf.writeInt16LE(((Number(v) + 32768) & 0xffff) - 32768, at));
      return;
    case GgufValueType.UINT32:
      b.u32(Number(BigInt.asUintN(32, BigInt(typeof v === "number" ? Math.trunc(v) : v === true ? 1 : v === false ? 0 : v))));
      return;
    case GgufValueType.INT32:
      b.raw(4, (buf, at) => buf.writeInt32LE(Number(BigInt.asIntN(32, BigInt(typeof v === "number" ? Math.trunc(v) : Number(v)))), at));
      return;
    case GgufValueType.FLOAT32:
      b.raw(4, (buf, at) => buf.writeFloatLE(Number(v), at));
      return;
    case GgufValueType.BOOL:
      b.raw(1, (buf, at) => buf.writeUInt8(v ? 1 : 0, at));
      return;
    case GgufValueType.STRING:
      b.str(String(v));
      return;
    case GgufValueType.UINT64:
      b.u64(BigInt.asUintN(64, BigInt(typeof v === "number" ? Math.trunc(v) : typeof v === "boolean" ? Number(v) : v)));
      return;
    case GgufValueType.INT64:
      b.raw(8, (buf, at) => buf.writeBigInt64LE(BigInt.asIntN(64, BigInt(typeof v === "number" ? Math.trunc(v) : typeof v === "boolean" ? Number(v) : v)), at));
      return;
    case GgufValueType.FLOAT64:
      b.raw(8, (buf, at) => buf.writeDoubleLE(Number(v), at));
      return;
    default:
      // an invalid type id written on purpose: no payload
      return;
  }
}

class Writer {
  buf = Buffer.alloc(1 << 16);
  length = 0;
  raw(n: number, f: (buf: Buffer, at: number) => void): void {
    if (this.length + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.length + n) size *= 2;
      const next = Buffer.alloc(size);
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    f(this.buf, this.length);
    this.length += n;
  }
  u32(v: number): void {
    this.raw(4, (b, at) => b.writeUInt32LE(v >>> 0, at));
  }
  u64(v: bigint): void {
    this.raw(8, (b, at) => b.writeBigUInt64LE(BigInt.asUintN(64, v), at));
  }
  str(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(BigInt(bytes.length));
    this.raw(bytes.length, (b, at) => bytes.copy(b, at));
  }
}

export interface SerializeOptions {
  /** Padding between header and data (default: the doc's `general.alignment` or 32). */
  alignment?: number;
}

/** Writes `doc` back to GGUF bytes: header, zero padding to the alignment, then `doc.data` as is. */
export function serializeGguf(doc: GgufDoc, options: SerializeOptions = {}): Buffer {
  const w = new Writer();
  w.raw(4, (b, at) => b.write("GGUF", at, "latin1"));
  w.u32(doc.version);
  w.u64(BigInt(doc.tensors.length));
  w.u64(BigInt(doc.kv.length));
  for (const { key, value } of doc.kv) {
    w.str(key);
    w.u32(value.type);
    if (value.type === GgufValueType.ARRAY) {
      w.u32(value.itemType);
      w.u64(BigInt(value.items.length));
      for (const it of value.items) writeScalar(w, value.itemType, it);
    } else {
      writeScalar(w, value.type, value.value);
    }
  }
  for (const t of doc.tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(t.offset);
  }
  let alignment = options.alignment;
  if (alignment === undefined) {
    const al = doc.kv.find((k) => k.key === "general.alignment");
    alignment = al && al.value.type === GgufValueType.UINT32 ? Number(al.value.value) : 32;
  }
  if (!(alignment > 0) || alignment > 1 << 20) alignment = 32;
  const dataOffset = Math.ceil(w.length / alignment) * alignment;
  const out = Buffer.alloc(dataOffset + doc.data.length);
  w.buf.copy(out, 0, 0, w.length);
  doc.data.copy(out, dataOffset);
  return out;
}

/**
 * Re-lays out the data section for `alignment` (each tensor's bytes from the
 * original layout, padded to the new alignment) and rewrites the offsets.
 * Tensors whose size is unknown or whose bytes lie outside the data keep
 * their bytes' extent as far as the original layout gives it.
 */
export function relayout(doc: GgufDoc, alignment: number, sizes?: Map<number, bigint>): void {
  const pad = (n: bigint) => ((n + BigInt(alignment) - 1n) / BigInt(alignment)) * BigInt(alignment);
  const parts: Buffer[] = [];
  let at = 0n;
  const orig = [...doc.tensors].map((t, i) => ({ t, i })).sort((a, b) => (a.t.offset < b.t.offset ? -1 : a.t.offset > b.t.offset ? 1 : 0));
  const extent = new Map<number, bigint>();
  for (let k = 0; k < orig.length; k++) {
    const next = k + 1 < orig.length ? orig[k + 1].t.offset : BigInt(doc.data.length);
    extent.set(orig[k].i, next - orig[k].t.offset);
  }
  doc.tensors.forEach((t, i) => {
    let size = sizes?.get(i) ?? tensorDataBytes(t.type, t.dims) ?? extent.get(i) ?? 0n;
    if (size < 0n || size > 1n << 26n) size = extent.get(i) ?? 0n; // a huge shape from an earlier mutation: keep its bytes
    const start = Number(t.offset);
    const bytes = Buffer.alloc(Number(pad(size)));
    if (start < doc.data.length) doc.data.copy(bytes, 0, start, Math.min(doc.data.length, start + Number(size)));
    t.offset = at;
    parts.push(bytes);
    at += BigInt(bytes.length);
  });
  doc.data = Buffer.concat(parts);
  doc.alignment = alignment;
}

/** A deep copy (the data section is shared until a mutation replaces it). */
export function cloneDoc(doc: GgufDoc): GgufDoc {
  return {
    ...doc,
    kv: doc.kv.map((k) => ({ key: k.key, value: k.value.type === GgufValueType.ARRAY ? { ...k.value, items: [...k.value.items] } : { ...k.value } })),
    tensors: doc.tensors.map((t) => ({ ...t, dims: [...t.dims] })),
    fields: doc.fields,
  };
}

export { SCALAR_SIZE };
