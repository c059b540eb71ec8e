/**
 * Encoding of the GGUF header's metadata values (little-endian; layout in
 * ./format.ts): a growable byte builder, range checks for the integer types,
 * and the value-type tag + payload of each `GgufValue`.
 */
import { GgufValueType, type GgufValue } from "./format";

/** Little-endian byte builder for the header. */
export class ByteBuilder {
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

/** Throws RangeError when `v` does not fit its declared GGUF type. */
export function checkValue(key: string, v: GgufValue): void {
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

/** Appends `v` as value-type tag + payload. */
export function writeValue(b: ByteBuilder, v: GgufValue): void {
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
