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
import { GGUF_VERSION, GgufValueType, type GgufTensorEntry } from "../gguf/writer";

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
