import { relayout, tensorDataBytes } from "./gguf-doc";
import { GGML_TYPES, U32, archOf, chance, getArr, pick, setKv } from "./values";
import type { DocMutation } from "./mutate-meta";

export const tensorDims: DocMutation = (doc, rng) => {
  const i = rng() % doc.tensors.length;
  const t = doc.tensors[i];
  const sizes = new Map<number, bigint>();
  let desc: string;
  switch (rng() % 4) {
    case 0: {
      const d = rng() % t.dims.length;
      const v = pick(rng, [0n, 1n, 2n, t.dims[d] - 1n, t.dims[d] + 1n, t.dims[d] * 2n, 1n << 31n, 1n << 62n]);
      t.dims[d] = v;
      desc = `tensor ${t.name} dim[${d}]=${v}`;
      break;
    }
    case 1:
      if (t.dims.length > 1) t.dims.pop();
      else t.dims.push(2n);
      desc = `tensor ${t.name} n_dims=${t.dims.length}`;
      break;
    case 2:
      t.dims.push(1n);
      if (chance(rng, 0.5)) t.dims.push(1n, 1n, 1n);
      desc = `tensor ${t.name} n_dims=${t.dims.length} (ones)`;
      break;
    default:
      t.dims.reverse();
      desc = `tensor ${t.name} dims reversed`;
  }
  // lay the data out for the new shape when it is small enough, so the file passes gguf's offset checks
  const size = tensorDataBytes(t.type, t.dims);
  if (size !== undefined && size < 1n << 26n && chance(rng, 0.8)) {
    sizes.set(i, size);
    relayout(doc, doc.alignment, sizes);
    desc += " (relaid)";
  }
  return desc;
};

export const tensorType: DocMutation = (doc, rng) => {
  const i = rng() % doc.tensors.length;
  const t = doc.tensors[i];
  const ty = pick(rng, GGML_TYPES);
  t.type = ty;
  if (tensorDataBytes(ty, t.dims) !== undefined && chance(rng, 0.8)) {
    relayout(doc, doc.alignment);
    return `tensor ${t.name} type=${ty} (relaid)`;
  }
  return `tensor ${t.name} type=${ty}`;
};

export const tensorTable: DocMutation = (doc, rng) => {
  const i = rng() % doc.tensors.length;
  const t = doc.tensors[i];
  switch (rng() % 6) {
    case 0: {
      const old = t.name;
      t.name = pick(rng, ["bogus.weight", `${old}x`, "blk.9.attn_q.weight", "x".repeat(200), ""]);
      return `tensor ${old} renamed ${JSON.stringify(t.name.length > 40 ? `${t.name.slice(0, 8)}…(${t.name.length})` : t.name)}`;
    }
    case 1: {
      const o = doc.tensors[rng() % doc.tensors.length];
      const old = t.name;
      t.name = o.name;
      return `tensor ${old} renamed to duplicate ${o.name}`;
    }
    case 2:
      doc.tensors.splice(i, 1);
      return `tensor ${t.name} dropped`;
    case 3:
      doc.tensors.push({ name: "extra.weight", dims: [64n], type: 0, offset: 0n });
      relayout(doc, doc.alignment);
      return "tensor extra.weight added";
    case 4: {
      const v = pick(rng, [t.offset + 1n, t.offset + BigInt(doc.alignment), BigInt(doc.data.length), 1n << 40n, 0n]);
      t.offset = v;
      return `tensor ${t.name} offset=${v}`;
    }
    default: {
      const o = doc.tensors[rng() % doc.tensors.length];
      t.offset = o.offset;
      return `tensor ${t.name} offset of ${o.name}`;
    }
  }
};

export const weights: DocMutation = (doc, rng) => {
  const t = doc.tensors[rng() % doc.tensors.length];
  if (t.type !== 0) return `weights ${t.name} (not f32)`;
  const v = pick(rng, [Number.NaN, Number.POSITIVE_INFINITY, 1e38, 0]);
  const n = Number(t.dims.reduce((a, b) => a * b, 1n));
  const data = Buffer.from(doc.data);
  const off = Number(t.offset);
  for (let k = 0; k < n && off + 4 * k + 4 <= data.length; k++) data.writeFloatLE(v, off + 4 * k);
  doc.data = data;
  return `weights ${t.name} all ${v}`;
};

/**
 * A llama-architecture model rebuilt with an odd but self-consistent geometry
 * (embedding, heads, KV heads, head sizes, feed-forward, layers): every tensor
 * shaped as llama.cpp expects for it, so the file passes the loader's shape
 * checks and reaches graph building and the kernels.
 */
export const geometry: DocMutation = (doc, rng) => {
  if (archOf(doc) !== "llama") return "geometry (not llama)";
  const vocabN = getArr(doc, "tokenizer.ggml.tokens")?.length ?? 0;
  if (vocabN === 0) return "geometry (no vocabulary)";
  const embd = pick(rng, [8, 16, 48, 60, 64, 96]);
  const nh = pick(rng, [1, 2, 3, 4, 5, 7, 8, 16]);
  const nkv = pick(rng, [1, 2, 3, nh, nh]);
  const hkDefault = Math.floor(embd / nh);
  const hk = chance(rng, 0.5) ? hkDefault : pick(rng, [2, 3, 4, 6, 8, 16, 32]);
  const hv = chance(rng, 0.7) ? hk : pick(rng, [2, 4, 8, 16]);
  const ff = pick(rng, [1, 7, 32, 100, 172]);
  const layers = pick(rng, [1, 2, 3]);
  const rot = chance(rng, 0.8) ? hk : pick(rng, [0, 2, hk - 1, hk + 2]);
  const arch = "llama";
  setKv(doc, `${arch}.embedding_length`, { type: U32, value: embd });
  setKv(doc, `${arch}.attention.head_count`, { type: U32, value: nh });
  setKv(doc, `${arch}.attention.head_count_kv`, { type: U32, value: nkv });
  if (hk !== hkDefault) setKv(doc, `${arch}.attention.key_length`, { type: U32, value: hk });
  if (hv !== hkDefault || hk !== hkDefault) setKv(doc, `${arch}.attention.value_length`, { type: U32, value: hv });
  setKv(doc, `${arch}.rope.dimension_count`, { type: U32, value: rot });
  setKv(doc, `${arch}.feed_forward_length`, { type: U32, value: ff });
  setKv(doc, `${arch}.block_count`, { type: U32, value: layers });
  const shapes: [string, number[]][] = [
    ["token_embd.weight", [embd, vocabN]],
    ["output_norm.weight", [embd]],
    ["output.weight", [embd, vocabN]],
  ];
  for (let l = 0; l < layers; l++) {
    shapes.push(
      [`blk.${l}.attn_norm.weight`, [embd]],
      [`blk.${l}.attn_q.weight`, [embd, hk * nh]],
      [`blk.${l}.attn_k.weight`, [embd, hk * nkv]],
      [`blk.${l}.attn_v.weight`, [embd, hv * nkv]],
      [`blk.${l}.attn_output.weight`, [hk * nh, embd]],
      [`blk.${l}.ffn_norm.weight`, [embd]],
      [`blk.${l}.ffn_gate.weight`, [embd, ff]],
      [`blk.${l}.ffn_down.weight`, [ff, embd]],
      [`blk.${l}.ffn_up.weight`, [embd, ff]],
    );
  }
  const parts: Buffer[] = [];
  let at = 0n;
  doc.tensors = shapes.map(([name, dims]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const bytes = Buffer.alloc(Math.ceil((n * 4) / doc.alignment) * doc.alignment);
    for (let k = 0; k < n; k++) bytes.writeFloatLE(name.endsWith("norm.weight") ? 1 : ((rng() % 2001) - 1000) / 20000, 4 * k);
    const t = { name, dims: dims.map(BigInt), type: 0, offset: at };
    at += BigInt(bytes.length);
    parts.push(bytes);
    return t;
  });
  doc.data = Buffer.concat(parts);
  return `geometry embd=${embd} heads=${nh} kv=${nkv} k=${hk} v=${hv} rot=${rot} ff=${ff} layers=${layers}`;
};
