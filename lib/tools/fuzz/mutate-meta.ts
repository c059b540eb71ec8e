/** Metadata mutations of a parsed GGUF: hyperparameters, architecture, keys, vocabulary, alignment, version. */
import { GgufValueType } from "../gguf/format";
import { relayout, type GgufDoc, type RawValue } from "./gguf-doc";
import {
  ALIGNMENTS,
  ARCHS,
  ARRAY_HPARAMS,
  BAD_IDS,
  F32,
  HPARAMS,
  I32,
  SPECIAL_IDS,
  STR,
  TOKENIZERS,
  U32,
  archOf,
  chance,
  fmt,
  getArr,
  pick,
  setKv,
  wrongType,
  type Rng,
} from "./values";

export type DocMutation = (doc: GgufDoc, rng: Rng) => string;

export const hparam: DocMutation = (doc, rng) => {
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

export const hparamArray: DocMutation = (doc, rng) => {
  const arch = archOf(doc);
  const key = `${arch}.${pick(rng, ARRAY_HPARAMS)}`;
  const n = pick(rng, [0, 1, 4, 5, 6, 600]);
  const fill = pick(rng, [0, 1, 3, 8, 0xffffffff]);
  const items = Array.from({ length: n }, (_, i) => (i === n - 1 ? fill : 8));
  const itemType = pick(rng, [U32, I32, F32]);
  setKv(doc, key, { type: GgufValueType.ARRAY, itemType, items });
  return `hparam ${key}=${GgufValueType[itemType].toLowerCase()}[${n}] last=${fill}`;
};

export const arch: DocMutation = (doc, rng) => {
  const old = archOf(doc);
  const a = pick(rng, ARCHS);
  setKv(doc, "general.architecture", { type: STR, value: a });
  if (chance(rng, 0.6)) {
    for (const k of doc.kv) if (k.key.startsWith(`${old}.`)) k.key = `${a}.${k.key.slice(old.length + 1)}`;
    return `arch ${JSON.stringify(a)} (keys renamed)`;
  }
  return `arch ${JSON.stringify(a)}`;
};

export const removeKey: DocMutation = (doc, rng) => {
  const i = rng() % doc.kv.length;
  const [k] = doc.kv.splice(i, 1);
  return `remove key ${k.key}`;
};

export const duplicateKey: DocMutation = (doc, rng) => {
  const k = doc.kv[rng() % doc.kv.length];
  doc.kv.push({ key: k.key, value: k.value });
  return `duplicate key ${k.key}`;
};

export const keyTypeSwap: DocMutation = (doc, rng) => {
  const k = doc.kv[rng() % doc.kv.length];
  const w = wrongType(rng, k.value.type);
  k.value = w.value;
  return `key ${k.key} as ${w.desc}`;
};

export const vocab: DocMutation = (doc, rng) => {
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

export const alignment: DocMutation = (doc, rng) => {
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

export const version: DocMutation = (doc, rng) => {
  doc.version = pick(rng, [0, 1, 2, 4, 0x03000000, 0xffffffff]);
  return `version ${doc.version}`;
};
