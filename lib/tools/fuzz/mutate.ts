/**
 * A structure-aware GGUF mutator: from a well-formed seed model (e.g.
 * stories260K) it writes files that are wrong on purpose — bad counts,
 * lengths, types, alignments, dimensions, offsets, metadata values
 * (hyperparameters that reach the kernels: epsilons, RoPE, head, expert and
 * layer counts), duplicate or missing vocabulary entries, vocabulary vs
 * embedding rows — plus random byte flips and truncations. Deterministic:
 * the same (base file, seed) gives the same bytes and the same description.
 *
 *   const base = parseGguf(fs.readFileSync("stories260K.gguf"));
 *   const c = mutateGguf(base, caseSeed(1, 42));  // { bytes, mutations: ["hparam llama.block_count=0 (uint32)"] }
 */
import { mulberry32 } from "../random";
import { GgufValueType } from "../gguf/format";
import { cloneDoc, parseGguf, relayout, serializeGguf, tensorDataBytes, type GgufDoc, type RawScalar, type RawValue } from "./gguf-doc";

export type Rng = () => number;

/** The seed of case `index` of a run with seed `runSeed` (a 32-bit mix of both). */
export function caseSeed(runSeed: number, index: number): number {
  let h = (Math.imul(runSeed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

const U32 = GgufValueType.UINT32;
const I32 = GgufValueType.INT32;
const F32 = GgufValueType.FLOAT32;
const STR = GgufValueType.STRING;

/** Hyperparameter keys (after "<arch>.") with values that are wrong for the seed model, and their usual type. */
const HPARAMS: { key: string; type: GgufValueType; values: RawScalar[] }[] = [
  { key: "block_count", type: U32, values: [0, 1, 4, 6, 512, 513, 4096, 0xffffffff] },
  { key: "embedding_length", type: U32, values: [0, 1, 7, 32, 63, 65, 128, 0xffffffff] },
  { key: "feed_forward_length", type: U32, values: [0, 1, 171, 173, 0xffffffff] },
  { key: "attention.head_count", type: U32, values: [0, 1, 3, 7, 16, 64, 65, 0xffffffff] },
  { key: "attention.head_count_kv", type: U32, values: [0, 1, 3, 5, 8, 16, 0xffffffff] },
  { key: "attention.layer_norm_rms_epsilon", type: F32, values: [Number.NaN, -1e-5, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY, 0, -0, 1e30] },
  { key: "attention.layer_norm_epsilon", type: F32, values: [Number.NaN, -1e-5, Number.POSITIVE_INFINITY] },
  { key: "rope.dimension_count", type: U32, values: [0, 1, 3, 7, 16, 64, 65, 0xffffffff] },
  { key: "rope.freq_base", type: F32, values: [Number.NaN, 0, -1, Number.POSITIVE_INFINITY, 1e-30] },
  { key: "rope.scaling.type", type: STR, values: ["yarn", "linear", "longrope", "bogus", ""] },
  { key: "rope.scaling.factor", type: F32, values: [Number.NaN, 0, -1, Number.POSITIVE_INFINITY] },
  { key: "rope.scaling.original_context_length", type: U32, values: [0, 1, 0xffffffff] },
  { key: "rope.scaling.yarn_log_multiplier", type: F32, values: [Number.NaN, -1] },
  { key: "rope.dimension_sections", type: I32, values: [0, -1, 9] },
  { key: "context_length", type: U32, values: [0, 1, 0xffffffff] },
  { key: "expert_count", type: U32, values: [1, 2, 8, 256, 257, 513, 0xffffffff] },
  { key: "expert_used_count", type: U32, values: [1, 2, 9, 0xffffffff] },
  { key: "expert_shared_count", type: U32, values: [1, 0xffffffff] },
  { key: "attention.key_length", type: U32, values: [0, 1, 7, 9, 4096, 0xffffffff] },
  { key: "attention.value_length", type: U32, values: [0, 1, 7, 9, 4096, 0xffffffff] },
  { key: "vocab_size", type: U32, values: [0, 1, 511, 513, 0xffffffff] },
  { key: "attention.sliding_window", type: U32, values: [0, 1, 0xffffffff] },
  { key: "attention.clamp_kqv", type: F32, values: [Number.NaN, -1] },
  { key: "attention.max_alibi_bias", type: F32, values: [Number.NaN, -1, Number.POSITIVE_INFINITY] },
  { key: "logit_scale", type: F32, values: [Number.NaN, 0, Number.POSITIVE_INFINITY] },
  { key: "attn_logit_softcapping", type: F32, values: [Number.NaN, 0, -1] },
  { key: "final_logit_softcapping", type: F32, values: [Number.NaN, 0, -1] },
  { key: "embedding_scale", type: F32, values: [Number.NaN, Number.POSITIVE_INFINITY] },
  { key: "residual_scale", type: F32, values: [Number.NaN] },
  { key: "attention.scale", type: F32, values: [Number.NaN, 0, Number.NEGATIVE_INFINITY] },
  { key: "leading_dense_block_count", type: U32, values: [0xffffffff, 6] },
  { key: "pooling_type", type: U32, values: [0xffffffff, 7] },
  { key: "attention.causal", type: GgufValueType.BOOL, values: [false] },
];

/** Per-layer array forms of keys llama.cpp reads with get_key_or_arr. */
const ARRAY_HPARAMS = ["attention.head_count", "attention.head_count_kv", "feed_forward_length"];

const ARCHS = [
  "gpt2",
  "qwen2",
  "qwen3moe",
  "mamba",
  "mamba2",
  "bert",
  "t5",
  "gemma2",
  "gemma3",
  "phi3",
  "falcon",
  "rwkv6",
  "deepseek2",
  "granitemoe",
  "llama4",
  "mpt",
  "bloom",
  "no-such-arch",
  "",
];
const TOKENIZERS = ["gpt2", "bert", "t5", "rwkv", "plamo2", "none", "no_vocab", "bogus", ""];
const SPECIAL_IDS = ["bos", "eos", "unknown", "padding", "seperator", "eot", "eom", "mask", "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep"];
const BAD_IDS = [-1, -2, 511, 512, 513, 0x7fffffff, 0xffffffff];
const ALIGNMENTS = [0, 1, 2, 3, 4, 8, 16, 24, 48, 64, 4096, 1 << 20, 0x80000000, 0xffffffff];
const GGML_TYPES = [1, 8, 2, 30, 3, 4, 39, 40, 100, 0xffffffff];

const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng() % a.length];
const chance = (rng: Rng, p: number): boolean => rng() / 0x100000000 < p;

function archOf(doc: GgufDoc): string {
  const a = doc.kv.find((k) => k.key === "general.architecture");
  return a && a.value.type === STR ? String(a.value.value) : "llama";
}

function setKv(doc: GgufDoc, key: string, value: RawValue): void {
  const i = doc.kv.findIndex((k) => k.key === key);
  if (i >= 0) doc.kv[i] = { key, value };
  else doc.kv.push({ key, value });
}

function getArr(doc: GgufDoc, key: string): RawScalar[] | undefined {
  const k = doc.kv.find((x) => x.key === key);
  return k && k.value.type === GgufValueType.ARRAY ? k.value.items : undefined;
}

const fmt = (v: RawScalar): string => (typeof v === "string" ? JSON.stringify(v) : typeof v === "number" && Object.is(v, -0) ? "-0" : String(v));

/** A value of a different GGUF type than the key expects. */
function wrongType(rng: Rng, expected: GgufValueType): { value: RawValue; desc: string } {
  const options: { value: RawValue; desc: string }[] = [
    { value: { type: STR, value: "5" }, desc: 'string "5"' },
    { value: { type: F32, value: 5.5 }, desc: "float32 5.5" },
    { value: { type: GgufValueType.INT64, value: -1n }, desc: "int64 -1" },
    { value: { type: GgufValueType.UINT64, value: 1n << 40n }, desc: "uint64 2^40" },
    { value: { type: GgufValueType.BOOL, value: true }, desc: "bool true" },
    { value: { type: GgufValueType.UINT8, value: 5 }, desc: "uint8 5" },
    { value: { type: GgufValueType.INT32, value: -5 }, desc: "int32 -5" },
    { value: { type: GgufValueType.ARRAY, itemType: STR, items: ["a"] }, desc: 'string[] ["a"]' },
    { value: { type: GgufValueType.ARRAY, itemType: U32, items: [] }, desc: "uint32[] []" },
    { value: { type: GgufValueType.ARRAY, itemType: GgufValueType.ARRAY, items: [] }, desc: "array[] []" },
  ];
  const o = options.filter((x) => x.value.type !== expected);
  return pick(rng, o);
}

// ---- semantic (structure-level) mutations: edit the doc, return a description

type DocMutation = (doc: GgufDoc, rng: Rng) => string;

const hparam: DocMutation = (doc, rng) => {
  const arch = archOf(doc);
  const h = pick(rng, HPARAMS);
  const key = `${arch}.${h.key}`;
  if (chance(rng, 0.12)) {
    const w = wrongType(rng, h.type);
    setKv(doc, key, w.value);
    return `hparam ${key}=${w.desc}`;
  }
  const v = pick(rng, h.values);
  setKv(doc, key, { type: h.type, value: v } as RawValue);
  return `hparam ${key}=${fmt(v)} (${GgufValueType[h.type].toLowerCase()})`;
};

const hparamArray: DocMutation = (doc, rng) => {
  const arch = archOf(doc);
  const key = `${arch}.${pick(rng, ARRAY_HPARAMS)}`;
  const n = pick(rng, [0, 1, 4, 5, 6, 600]);
  const fill = pick(rng, [0, 1, 3, 8, 0xffffffff]);
  const items = Array.from({ length: n }, (_, i) => (i === n - 1 ? fill : 8));
  const itemType = pick(rng, [U32, I32, F32]);
  setKv(doc, key, { type: GgufValueType.ARRAY, itemType, items });
  return `hparam ${key}=${GgufValueType[itemType].toLowerCase()}[${n}] last=${fill}`;
};

const arch: DocMutation = (doc, rng) => {
  const old = archOf(doc);
  const a = pick(rng, ARCHS);
  setKv(doc, "general.architecture", { type: STR, value: a });
  if (chance(rng, 0.6)) {
    for (const k of doc.kv) if (k.key.startsWith(`${old}.`)) k.key = `${a}.${k.key.slice(old.length + 1)}`;
    return `arch ${JSON.stringify(a)} (keys renamed)`;
  }
  return `arch ${JSON.stringify(a)}`;
};

const removeKey: DocMutation = (doc, rng) => {
  const i = rng() % doc.kv.length;
  const [k] = doc.kv.splice(i, 1);
  return `remove key ${k.key}`;
};

const duplicateKey: DocMutation = (doc, rng) => {
  const k = doc.kv[rng() % doc.kv.length];
  doc.kv.push({ key: k.key, value: k.value });
  return `duplicate key ${k.key}`;
};

const keyTypeSwap: DocMutation = (doc, rng) => {
  const k = doc.kv[rng() % doc.kv.length];
  const w = wrongType(rng, k.value.type);
  k.value = w.value;
  return `key ${k.key} as ${w.desc}`;
};

const vocab: DocMutation = (doc, rng) => {
  const tokens = getArr(doc, "tokenizer.ggml.tokens");
  if (!tokens || tokens.length < 4) return "vocab (none)";
  const n = tokens.length;
  switch (rng() % 12) {
    case 0: {
      const count = pick(rng, [1, 1, 2, 10, n]);
      const out: string[] = [];
      for (let c = 0; c < count; c++) {
        const i = rng() % n;
        const j = rng() % n;
        if (i === j) continue;
        tokens[j] = tokens[i];
        out.push(`${j}=${i}`);
      }
      return `vocab duplicate tokens ${out.slice(0, 4).join(",")}${out.length > 4 ? ` (+${out.length - 4})` : ""}`;
    }
    case 1: {
      const i = rng() % n;
      tokens[i] = "";
      if (chance(rng, 0.5)) {
        const j = (i + 1) % n;
        tokens[j] = `[EMPTY_${i}]`;
        return `vocab token ${i} empty, token ${j}="[EMPTY_${i}]"`;
      }
      return `vocab token ${i} empty`;
    }
    case 2: {
      const m = pick(rng, [0, 1, 2, 3, 100, n - 1]);
      tokens.length = m;
      return `vocab truncated to ${m} tokens`;
    }
    case 3: {
      const m = pick(rng, [1, 100, 70000]);
      for (let i = 0; i < m; i++) tokens.push(`extra${i}`);
      return `vocab extended by ${m} tokens`;
    }
    case 4: {
      const key = pick(rng, ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"]);
      const a = getArr(doc, key);
      if (!a) return `vocab ${key} (none)`;
      const m = pick(rng, [0, 1, n - 1]);
      a.length = m;
      return `vocab ${key} truncated to ${m}`;
    }
    case 5: {
      const key = pick(rng, ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"]);
      const itemType = pick(rng, [GgufValueType.UINT8, GgufValueType.FLOAT64, STR, I32, F32]);
      setKv(doc, key, { type: GgufValueType.ARRAY, itemType, items: Array.from({ length: n }, () => (itemType === STR ? "x" : 1)) });
      return `vocab ${key} as ${GgufValueType[itemType].toLowerCase()}[${n}]`;
    }
    case 6: {
      const a = getArr(doc, "tokenizer.ggml.token_type");
      if (!a) return "vocab token_type (none)";
      const v = pick(rng, [1, 2, 3, 4, 5, 6, 99, -1]);
      const all = chance(rng, 0.5);
      if (all) a.fill(v);
      else a[rng() % n] = v;
      return `vocab token_type ${all ? "all" : "one"}=${v}`;
    }
    case 7: {
      const t = pick(rng, TOKENIZERS);
      setKv(doc, "tokenizer.ggml.model", { type: STR, value: t });
      if ((t === "gpt2" || t === "rwkv") && chance(rng, 0.5)) {
        const merges = pick(rng, [["a"], ["a b c"], [""], [" "], ["<s> </s>"]]);
        setKv(doc, "tokenizer.ggml.merges", { type: GgufValueType.ARRAY, itemType: STR, items: merges });
        return `tokenizer ${JSON.stringify(t)} merges ${JSON.stringify(merges)}`;
      }
      return `tokenizer ${JSON.stringify(t)}`;
    }
    case 8: {
      const which = pick(rng, SPECIAL_IDS);
      const v = pick(rng, BAD_IDS);
      const type = chance(rng, 0.7) ? U32 : I32;
      setKv(doc, `tokenizer.ggml.${which}_token_id`, { type, value: v });
      if (chance(rng, 0.5)) setKv(doc, `tokenizer.ggml.add_${which === "eos" ? "eos" : "bos"}_token`, { type: GgufValueType.BOOL, value: true });
      return `vocab ${which}_token_id=${v}`;
    }
    case 9: {
      // remove the byte tokens (SPM byte fallback) or the newline byte
      const all = chance(rng, 0.5);
      let removed = 0;
      for (let i = 0; i < n; i++) {
        const s = String(tokens[i]);
        if (/^<0x[0-9A-F]{2}>$/.test(s) && (all || s === "<0x0A>")) {
          tokens[i] = `nobyte${i}`;
          removed++;
        }
      }
      return `vocab byte tokens ${all ? "all" : "<0x0A>"} renamed (${removed})`;
    }
    case 10: {
      const v = pick(rng, ["default", "llama3", "qwen2", "bogus", ""]);
      setKv(doc, "tokenizer.ggml.pre", { type: STR, value: v });
      return `tokenizer.ggml.pre ${JSON.stringify(v)}`;
    }
    default: {
      const s = pick(rng, ["\u0000", "\uffff", "a".repeat(70000), "\ud800", "<|im_start|>"]);
      tokens[rng() % n] = s;
      return `vocab token odd string (${s.length} chars)`;
    }
  }
};

const alignment: DocMutation = (doc, rng) => {
  const a = pick(rng, ALIGNMENTS);
  const pow2 = a > 0 && (a & (a - 1)) === 0;
  if (chance(rng, 0.1)) {
    setKv(doc, "general.alignment", { type: pick(rng, [GgufValueType.UINT64, I32, STR]), value: a } as RawValue);
    return `alignment ${a} wrong type`;
  }
  setKv(doc, "general.alignment", { type: U32, value: a });
  if (pow2 && a <= 1 << 16 && chance(rng, 0.7)) {
    relayout(doc, a);
    return `alignment ${a} (data laid out for it)`;
  }
  return `alignment ${a}`;
};

const tensorDims: DocMutation = (doc, rng) => {
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

const tensorType: DocMutation = (doc, rng) => {
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

const tensorTable: DocMutation = (doc, rng) => {
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

const weights: DocMutation = (doc, rng) => {
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

const version: DocMutation = (doc, rng) => {
  doc.version = pick(rng, [0, 1, 2, 4, 0x03000000, 0xffffffff]);
  return `version ${doc.version}`;
};

/**
 * A llama-architecture model rebuilt with an odd but self-consistent geometry
 * (embedding, heads, KV heads, head sizes, feed-forward, layers): every tensor
 * shaped as llama.cpp expects for it, so the file passes the loader's shape
 * checks and reaches graph building and the kernels.
 */
const geometry: DocMutation = (doc, rng) => {
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

const DOC_MUTATIONS: [DocMutation, number][] = [
  [geometry, 8],
  [hparam, 30],
  [hparamArray, 5],
  [arch, 5],
  [removeKey, 5],
  [duplicateKey, 2],
  [keyTypeSwap, 5],
  [vocab, 18],
  [alignment, 6],
  [tensorDims, 8],
  [tensorType, 5],
  [tensorTable, 6],
  [weights, 3],
  [version, 1],
];

// ---- byte-level mutations on the serialized file

type ByteMutation = (bytes: Buffer, rng: Rng) => { bytes: Buffer; desc: string };

const INTERESTING_64 = [
  0n,
  1n,
  2n,
  0x7fn,
  0xffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  1n << 62n,
  (1n << 63n) - 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

const field: ByteMutation = (bytes, rng) => {
  let doc: GgufDoc;
  try {
    doc = parseGguf(bytes);
  } catch {
    return flips(bytes, rng);
  }
  // favour the rare kinds (counts, types, dims) over the many string lengths
  const kinds = [...new Set(doc.fields.map((f) => f.kind))];
  const kind = pick(rng, kinds);
  const candidates = doc.fields.filter((f) => f.kind === kind);
  const f = pick(rng, candidates);
  const out = Buffer.from(bytes);
  const old = f.width === 4 ? BigInt(out.readUInt32LE(f.at)) : out.readBigUInt64LE(f.at);
  const v = chance(rng, 0.3) ? pick(rng, [old + 1n, old - 1n, old * 2n, old + 8n, old ^ 0x80n]) : pick(rng, INTERESTING_64);
  if (f.width === 4) out.writeUInt32LE(Number(BigInt.asUintN(32, v)), f.at);
  else out.writeBigUInt64LE(BigInt.asUintN(64, v), f.at);
  return { bytes: out, desc: `field ${f.label}: ${old} -> ${BigInt.asUintN(f.width * 8, v)}` };
};

function headerEnd(bytes: Buffer): number {
  try {
    return parseGguf(bytes).headerBytes;
  } catch {
    return Math.min(bytes.length, 1 << 16);
  }
}

const flips: ByteMutation = (bytes, rng) => {
  const out = Buffer.from(bytes);
  const inHeader = chance(rng, 0.7);
  const end = inHeader ? headerEnd(bytes) : bytes.length;
  const n = pick(rng, [1, 1, 2, 4, 16]);
  const at: number[] = [];
  for (let k = 0; k < n; k++) {
    const i = rng() % end;
    const how = rng() % 3;
    out[i] = how === 0 ? out[i] ^ (1 + (rng() % 255)) : how === 1 ? 0xff : 0;
    at.push(i);
  }
  return { bytes: out, desc: `flip ${n} byte(s) at ${at.slice(0, 4).join(",")}${n > 4 ? ",…" : ""}${inHeader ? " (header)" : ""}` };
};

const truncate: ByteMutation = (bytes, rng) => {
  const end = headerEnd(bytes);
  const where = rng() % 3;
  const n = where === 0 ? rng() % end : where === 1 ? end + (rng() % Math.max(1, bytes.length - end)) : bytes.length - 1 - (rng() % 64);
  return { bytes: bytes.subarray(0, Math.max(0, n)), desc: `truncate to ${n} of ${bytes.length}` };
};

const splice: ByteMutation = (bytes, rng) => {
  const end = headerEnd(bytes);
  const at = 24 + (rng() % Math.max(1, end - 24));
  const n = 1 + (rng() % 16);
  if (chance(rng, 0.5)) return { bytes: Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + n)]), desc: `delete ${n} byte(s) at ${at}` };
  const ins = Buffer.alloc(n, rng() & 0xff);
  return { bytes: Buffer.concat([bytes.subarray(0, at), ins, bytes.subarray(at)]), desc: `insert ${n} byte(s) at ${at}` };
};

const BYTE_MUTATIONS: [ByteMutation, number][] = [
  [field, 10],
  [flips, 6],
  [truncate, 3],
  [splice, 2],
];

function weighted<T>(rng: Rng, list: [T, number][]): T {
  const total = list.reduce((a, [, w]) => a + w, 0);
  let r = rng() % total;
  for (const [m, w] of list) {
    if (r < w) return m;
    r -= w;
  }
  return list[0][0];
}

export interface MutatedGguf {
  seed: number;
  bytes: Buffer;
  /** What was done, in order ("hparam llama.block_count=0 (uint32)", "field tensor[3].dim[1]: 64 -> 0", …). */
  mutations: string[];
}

/**
 * One mutated copy of `base` (a parsed well-formed GGUF), deterministic in
 * `seed`: 1–3 structure-level edits and/or byte-level edits (3 in 4 cases
 * have exactly one edit, so a crash names its cause).
 */
export function mutateGguf(base: GgufDoc, seed: number): MutatedGguf {
  const rng = mulberry32(seed);
  const count = chance(rng, 0.75) ? 1 : 2 + (rng() % 2);
  const mutations: string[] = [];
  const doc = cloneDoc(base);
  const byteOps: ByteMutation[] = [];
  for (let k = 0; k < count; k++) {
    if (chance(rng, 0.72)) mutations.push(weighted(rng, DOC_MUTATIONS)(doc, rng));
    else byteOps.push(weighted(rng, BYTE_MUTATIONS));
  }
  let bytes = serializeGguf(doc);
  for (const op of byteOps) {
    const r = op(bytes, rng);
    bytes = r.bytes;
    mutations.push(r.desc);
  }
  return { seed, bytes, mutations };
}
