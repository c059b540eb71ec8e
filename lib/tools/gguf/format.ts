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
 * The writer itself is in ./writer.ts, the tensor-data sink in ./sink.ts and the
 * header encoding in ./encode.ts.
 */

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
