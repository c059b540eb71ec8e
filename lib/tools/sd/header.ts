/**
 * The GGUF header of the SD1 checkpoint (names may be longer than
 * GgufWriter's 64-byte limit).
 *
 * Why the header is written here rather than through GgufWriter: SD1 tensor
 * names reach 83 bytes
 * (cond_stage_model.transformer.text_model.encoder.layers.11.self_attn
 * .out_proj.weight), and GgufWriter enforces llama.cpp's default GGML_MAX_NAME
 * of 64. sd.cpp reads them: this project builds ggml with GGML_MAX_NAME=160,
 * and when a stock ggml refuses a long name sd.cpp falls back to its own GGUF
 * reader (src/model_io/gguf_reader_ext.h). So this file builds the GGUF header
 * itself (no array metadata: that fallback reader mis-parses arrays) and
 * reuses ../gguf/sink.ts's GgufDataSink for the streamed, padded tensor data.
 * GGUF rather than safetensors so that "q8_0" files can exist.
 */
import fs from "node:fs";
import path from "node:path";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_VERSION,
  type GgmlType,
  GgufDataSink,
  GgufValueType,
  alignUp,
  tensorByteSize,
  type GgufTensorEntry,
} from "../gguf/writer";

/** A metadata pair: a string, or a uint32 when `u32` is set. */
export type Kv = { key: string; value: string } | { key: string; value: number; u32: true };

/** The serialized header: magic, version, counts, KV pairs and tensor infos (no padding). */
export function ggufHeader(kvs: readonly Kv[], tensors: readonly GgufTensorEntry[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const i32 = (v: number): void => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number): void => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string): void => {
    const b = Buffer.from(s, "utf8");
    u64(b.length);
    parts.push(b);
  };
  parts.push(Buffer.from("GGUF", "latin1"));
  u32(GGUF_VERSION);
  u64(tensors.length);
  u64(kvs.length);
  for (const kv of kvs) {
    str(kv.key);
    if ("u32" in kv) {
      u32(GgufValueType.UINT32);
      u32(kv.value);
    } else {
      u32(GgufValueType.STRING);
      str(kv.value);
    }
  }
  for (const t of tensors) {
    str(t.name);
    u32(t.shape.length);
    for (const d of t.shape) u64(d);
    i32(t.type);
    u64(t.offset);
  }
  return Buffer.concat(parts);
}

/**
 * Writes a GGUF file whose tensor names may pass GgufWriter's 64 bytes: the
 * header by ggufHeader (`kvs`, the `tensors` in order, 32-byte aligned), then
 * each tensor's data, streamed by `produce(i, entry, write)` in order
 * (GgufDataSink pads between tensors). Returns the file's size in bytes.
 * @throws Error when a tensor's data is not its size (GgufDataSink) or the file is not as long as laid out
 */
export async function writeLongNameGguf(
  file: string,
  kvs: readonly Kv[],
  tensors: readonly { name: string; shape: readonly number[]; type: GgmlType }[],
  produce: (i: number, entry: GgufTensorEntry, write: (chunk: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<number> {
  const entries: GgufTensorEntry[] = [];
  let offset = 0;
  for (const t of tensors) {
    const nbytes = tensorByteSize(t.type, t.shape);
    entries.push({ name: t.name, shape: [...t.shape], type: t.type, offset, nbytes });
    offset += alignUp(nbytes, GGUF_DEFAULT_ALIGNMENT);
  }
  const header = ggufHeader(kvs, entries);
  const dataOffset = alignUp(header.length, GGUF_DEFAULT_ALIGNMENT);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fh = await fs.promises.open(file, "w");
  let sink: GgufDataSink;
  try {
    const head = Buffer.alloc(dataOffset);
    header.copy(head, 0);
    let off = 0;
    while (off < head.length) off += (await fh.write(head, off, head.length - off)).bytesWritten;
    sink = new GgufDataSink(fh, entries, GGUF_DEFAULT_ALIGNMENT, dataOffset);
  } catch (e) {
    await fh.close();
    throw e;
  }
  try {
    const write = (chunk: Uint8Array): Promise<void> => sink.write(chunk);
    for (let i = 0; i < entries.length; i++) await produce(i, entries[i], write);
    await sink.close();
  } catch (e) {
    await sink.abort();
    throw e;
  }
  const bytes = fs.statSync(file).size;
  if (bytes !== dataOffset + offset) throw new Error(`internal: wrote ${bytes} bytes, expected ${dataOffset + offset}`);
  return bytes;
}
