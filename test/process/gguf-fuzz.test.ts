// Malformed GGUF files must fail with a typed error, never take the process down.
// Every crasher the fuzzer (npm run fuzz:gguf) found is kept here as a minimal
// case generated from stories260K, each run in a child process (dist/cjs/tools/fuzz/child.js:
// load → context → 4 greedy tokens → dispose, then vocabOnly → tokenize →
// detokenize → chat template), so a regression is a failed test, not a dead runner.
// Needs `npm run build:ts` (the child runs from dist/).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GgufValueType } from "../../lib/tools/gguf/format";
import { cloneDoc, parseGguf, relayout, serializeGguf, type GgufDoc, type RawValue } from "../../lib/tools/fuzz/gguf-doc";
import { caseSeed, mutateGguf } from "../../lib/tools/fuzz/mutate";
import { runGgufFuzz } from "../../lib/tools/fuzz/run";
import type { CaseReply } from "../../lib/tools/fuzz/child";
import { storiesPath, tempDir } from "../helpers";

const root = path.resolve(__dirname, "..", "..");
const child = path.join(root, "dist", "cjs", "tools", "fuzz", "child.js");

let model: string;
let base: GgufDoc;
let baseBytes: Buffer;
let tmp: ReturnType<typeof tempDir>;

beforeAll(async () => {
  model = await storiesPath();
  baseBytes = fs.readFileSync(model);
  base = parseGguf(baseBytes);
  tmp = tempDir("genai-gguf-fuzz-");
});
afterAll(() => tmp?.cleanup());

/** Runs one file through the fuzz child in its own process; fails the test on a crash or hang. */
function runAlone(name: string, bytes: Buffer, env: NodeJS.ProcessEnv = {}): Omit<CaseReply, "id"> {
  const file = path.join(tmp.dir, `${name}.gguf`);
  fs.writeFileSync(file, bytes);
  const code = `require(${JSON.stringify(child)}).runCase(${JSON.stringify(file)}).then(([full, vocabOnly]) => console.log(JSON.stringify({ full, vocabOnly })))`;
  const r = spawnSync(process.execPath, ["-e", code], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, GENAI_NATIVE_BACKENDS: "cpu", GENAI_NATIVE_PROBE: "0", GENAI_NATIVE_LOG: "none", ...env },
  });
  expect({ signal: r.signal, status: r.status, stderr: r.status === 0 ? "" : r.stderr.slice(-600) }).toEqual({ signal: null, status: 0, stderr: "" });
  return JSON.parse(r.stdout.trim().split("\n").pop() as string);
}

/** stories260K with `edit` applied to its structure. */
function edited(edit: (d: GgufDoc) => void): Buffer {
  const d = cloneDoc(base);
  edit(d);
  return serializeGguf(d);
}

function setKv(d: GgufDoc, key: string, value: RawValue): void {
  const i = d.kv.findIndex((k) => k.key === key);
  if (i >= 0) d.kv[i] = { key, value };
  else d.kv.push({ key, value });
}
const u32 = (value: number): RawValue => ({ type: GgufValueType.UINT32, value });
const f32 = (value: number): RawValue => ({ type: GgufValueType.FLOAT32, value });
const str = (value: string): RawValue => ({ type: GgufValueType.STRING, value });
const tokens = (d: GgufDoc): string[] => {
  const v = d.kv.find((k) => k.key === "tokenizer.ggml.tokens")?.value as { items: string[] } | undefined;
  if (!v) throw new Error("the seed model has no tokenizer.ggml.tokens");
  return v.items;
};

function expectInvalid(r: Omit<CaseReply, "id">["full"], pattern: RegExp): void {
  expect(r.outcome).toBe("error");
  if (r.outcome !== "error") return;
  expect(r.code).toBe("INVALID_MODEL");
  expect(r.message).toMatch(pattern);
}

describe("GGUF mutator", () => {
  it("parses and re-serializes stories260K byte for byte", () => {
    expect(serializeGguf(parseGguf(baseBytes)).equals(baseBytes)).toBe(true);
  });

  it("is deterministic per seed, and seeds differ", () => {
    const a = mutateGguf(base, caseSeed(1, 17));
    const b = mutateGguf(parseGguf(baseBytes), caseSeed(1, 17));
    expect(a.mutations).toEqual(b.mutations);
    expect(a.bytes.equals(b.bytes)).toBe(true);
    const kinds = new Set(Array.from({ length: 200 }, (_, i) => mutateGguf(base, caseSeed(1, i)).mutations[0].split(" ")[0]));
    for (const k of ["hparam", "vocab", "alignment", "tensor", "field", "flip", "truncate"]) expect(kinds, k).toContain(k);
  });
});

describe("crashers found by the fuzzer, kept as minimal cases", () => {
  it("duplicate vocabulary tokens (llama-vocab.cpp: id_to_token.size() == token_to_id.size())", () => {
    const r = runAlone(
      "dup-tokens",
      edited((d) => {
        tokens(d)[300] = tokens(d)[200];
      }),
    );
    expectInvalid(r.full, /twice/);
    expectInvalid(r.vocabOnly, /twice/);
    // an empty token reads as "[EMPTY_<i>]": equal to a token of that text
    const r2 = runAlone(
      "empty-token",
      edited((d) => {
        tokens(d)[10] = "";
        tokens(d)[11] = "[EMPTY_10]";
      }),
    );
    expectInvalid(r2.vocabOnly, /twice/);
  });

  it("general.alignment below ggml's 32 bytes (ggml-backend.cpp: buffer pointer must be aligned): loads without mmap", () => {
    for (const a of [1, 8, 16]) {
      const r = runAlone(
        `align-${a}`,
        edited((d) => {
          setKv(d, "general.alignment", u32(a));
          relayout(d, a);
        }),
      );
      expect(r.full, `alignment ${a}`).toMatchObject({ outcome: "ok", tokens: 4 });
    }
  });

  it("layer counts 0 and above LLAMA_MAX_LAYERS (llama-model.cpp: n_layer_all > 0 && <= LLAMA_MAX_LAYERS)", () => {
    expectInvalid(
      runAlone(
        "layers-0",
        edited((d) => setKv(d, "llama.block_count", u32(0))),
      ).full,
      /block_count is 0/,
    );
    expectInvalid(
      runAlone(
        "layers-513",
        edited((d) => setKv(d, "llama.block_count", u32(513))),
      ).full,
      /block_count is 513/,
    );
  });

  it("NaN, negative and infinite norm epsilons (ggml-cpu ops.cpp: eps >= 0.0f at the first decode)", () => {
    for (const [name, v] of [
      ["nan", Number.NaN],
      ["neg", -1e-5],
      ["-inf", Number.NEGATIVE_INFINITY],
    ] as const) {
      expectInvalid(
        runAlone(
          `eps-${name}`,
          edited((d) => setKv(d, "llama.attention.layer_norm_rms_epsilon", f32(v))),
        ).full,
        /epsilon must be finite/,
      );
    }
    expectInvalid(
      runAlone(
        "ln-eps",
        edited((d) => setKv(d, "llama.attention.layer_norm_epsilon", f32(Number.NaN))),
      ).full,
      /layer_norm_epsilon is NaN/,
    );
  });

  it("expert counts that do not fit (llama-model.cpp: n_expert_used_max > 0, <= n_expert, n_expert <= LLAMA_MAX_EXPERTS)", () => {
    expectInvalid(
      runAlone(
        "experts-no-used",
        edited((d) => setKv(d, "llama.expert_count", u32(8))),
      ).full,
      /expert_used_count is missing or 0/,
    );
    expectInvalid(
      runAlone(
        "experts-used-gt",
        edited((d) => setKv(d, "llama.expert_used_count", u32(9))),
      ).full,
      /exceeds llama.expert_count/,
    );
    expectInvalid(
      runAlone(
        "experts-too-many",
        edited((d) => {
          setKv(d, "llama.expert_count", u32(2000));
          setKv(d, "llama.expert_used_count", u32(2));
        }),
      ).full,
      /supports 0..1024/,
    );
  });

  it("unknown rope.scaling.type (llama-model.cpp: rope_scaling_type_train != UNSPECIFIED)", () => {
    expectInvalid(
      runAlone(
        "rope-type",
        edited((d) => setKv(d, "llama.rope.scaling.type", str("bogus"))),
      ).full,
      /rope.scaling.type/,
    );
  });

  it("a norm weight that is not f32 (ggml-cpu binary-ops.cpp: unsupported types at the first decode)", () => {
    const r = runAlone(
      "norm-f16",
      edited((d) => {
        const t = d.tensors.find((x) => x.name === "blk.4.attn_norm.weight");
        if (t) t.type = 1;
        relayout(d, 32);
      }),
    );
    expectInvalid(r.full, /blk.4.attn_norm.weight is a vector of type f16/);
  });

  it("a WordPiece vocabulary with byte tokens (llama-vocab.cpp token_to_byte: GGML_ABORT)", () => {
    const r = runAlone(
      "bert-bytes",
      edited((d) => setKv(d, "tokenizer.ggml.model", str("bert"))),
    );
    expectInvalid(r.full, /byte token/);
    expectInvalid(r.vocabOnly, /byte token/);
  });

  it("a model without a vocabulary cannot tokenize (llama-vocab.cpp tokenize: Tokenizer not initialized)", () => {
    const r = runAlone(
      "no-vocab",
      edited((d) => setKv(d, "tokenizer.ggml.model", str("none"))),
    );
    expect(r.full.outcome).toBe("error");
    expect(r.vocabOnly).toMatchObject({ outcome: "error", code: "INVALID_MODEL", stage: "tokenize" });
    if (r.vocabOnly.outcome === "error") expect(r.vocabOnly.message).toMatch(/no vocabulary/);
  });

  it("adding a BOS the vocabulary does not have (llama-vocab.cpp tokenize: special_bos_id != LLAMA_TOKEN_NULL)", () => {
    // one token: the default BOS id 1 is out of range, llama.cpp disables it, but SPM still adds a BOS
    const r = runAlone(
      "bos-out-of-range",
      edited((d) => {
        tokens(d).length = 1;
      }),
    );
    expect(r.vocabOnly).toMatchObject({ outcome: "error", code: "INVALID_MODEL", stage: "tokenize" });
    if (r.vocabOnly.outcome === "error") expect(r.vocabOnly.message).toMatch(/BOS/);
    expect(r.full).toMatchObject({ outcome: "error", code: "INVALID_MODEL" });
  });
});

describe("second line: an assertion during a load is an exception (native/util/abort_guard.h)", () => {
  it("with the file checks off (GENAI_NATIVE_GGUF_CHECK=0), load-time assertions reject with INVALID_MODEL naming the assertion", () => {
    const off = { GENAI_NATIVE_GGUF_CHECK: "0" };
    const cases: [string, Buffer, RegExp][] = [
      [
        "dup-tokens",
        edited((d) => {
          tokens(d)[300] = tokens(d)[200];
        }),
        /llama-vocab\.cpp:\d+: GGML_ASSERT\(id_to_token.size\(\) == token_to_id.size\(\)\)/,
      ],
      ["layers-0", edited((d) => setKv(d, "llama.block_count", u32(0))), /GGML_ASSERT\(hparams.n_layer_all > 0/],
      ["experts-no-used", edited((d) => setKv(d, "llama.expert_count", u32(8))), /GGML_ASSERT\(n_expert_used_max > 0\)/],
      [
        "align-16",
        edited((d) => {
          setKv(d, "general.alignment", u32(16));
          relayout(d, 16);
        }),
        /buffer pointer must be aligned/,
      ],
      ["bert-bytes", edited((d) => setKv(d, "tokenizer.ggml.model", str("bert"))), /llama-vocab\.cpp:\d+: fatal error/],
    ];
    for (const [name, bytes, pattern] of cases) {
      const r = runAlone(`off-${name}`, bytes, off);
      expect(r.full, name).toMatchObject({ outcome: "error", code: "INVALID_MODEL", stage: "load" });
      if (r.full.outcome === "error") expect(r.full.message, name).toMatch(pattern);
    }
  });
});

describe("first decode", () => {
  it("an odd RoPE dimension count (ggml-cpu ops.cpp rope: n_dims % 2 == 0) is INVALID_MODEL at load", () => {
    // a self-consistent model with head size 3: embedding 24, 8 heads, 4 KV heads
    const bytes = edited((d) => {
      const set = (k: string, v: number) => setKv(d, `llama.${k}`, u32(v));
      set("embedding_length", 24);
      set("rope.dimension_count", 3);
      const dims: Record<string, bigint[]> = {
        attn_q: [24n, 24n],
        attn_k: [24n, 12n],
        attn_v: [24n, 12n],
        attn_output: [24n, 24n],
        ffn_gate: [24n, 172n],
        ffn_down: [172n, 24n],
        ffn_up: [24n, 172n],
      };
      const sizes = new Map<number, bigint>();
      d.tensors.forEach((t, i) => {
        const kind = t.name.split(".").at(-2) as string;
        if (t.name === "token_embd.weight" || t.name === "output.weight") t.dims = [24n, 512n];
        else if (t.dims.length === 1) t.dims = [24n];
        else if (dims[kind]) t.dims = dims[kind];
        sizes.set(i, t.dims.reduce((a, b) => a * b, 1n) * 4n);
      });
      relayout(d, 32, sizes);
    });
    const r = runAlone("rope-odd", bytes);
    expect(r.full).toMatchObject({ outcome: "error", code: "INVALID_MODEL", stage: "load" });
    if (r.full.outcome === "error") expect(r.full.message).toMatch(/RoPE dimension count 3/);
    // the same geometry with an even head size loads and generates (the check is not over-broad)
    const ok = runAlone(
      "rope-even",
      edited((d) => {
        const set = (k: string, v: number) => setKv(d, `llama.${k}`, u32(v));
        set("embedding_length", 32);
        set("rope.dimension_count", 4);
        const dims: Record<string, bigint[]> = {
          attn_q: [32n, 32n],
          attn_k: [32n, 16n],
          attn_v: [32n, 16n],
          attn_output: [32n, 32n],
          ffn_gate: [32n, 172n],
          ffn_down: [172n, 32n],
          ffn_up: [32n, 172n],
        };
        const sizes = new Map<number, bigint>();
        d.tensors.forEach((t, i) => {
          const kind = t.name.split(".").at(-2) as string;
          if (t.name === "token_embd.weight" || t.name === "output.weight") t.dims = [32n, 512n];
          else if (t.dims.length === 1) t.dims = [32n];
          else if (dims[kind]) t.dims = dims[kind];
          sizes.set(i, t.dims.reduce((a, b) => a * b, 1n) * 4n);
        });
        relayout(d, 32, sizes);
      }),
    );
    expect(ok.full).toMatchObject({ outcome: "ok", tokens: 4 });
  });
});

describe("context creation", () => {
  it("value_length unlike key_length with matching tensor shapes: the graph builder's assertion (src/models/llama.cpp: n_embd_head == n_embd_head_k) is INVALID_MODEL at createContext", () => {
    const bytes = edited((d) => {
      setKv(d, "llama.attention.value_length", u32(16));
      const sizes = new Map<number, bigint>();
      d.tensors.forEach((t, i) => {
        if (t.name.endsWith("attn_v.weight")) {
          t.dims = [64n, 64n];
          sizes.set(i, 64n * 64n * 4n);
        }
      });
      relayout(d, 32, sizes);
    });
    const r = runAlone("value-length", bytes);
    expect(r.full).toMatchObject({ outcome: "error", code: "INVALID_MODEL", stage: "context" });
    if (r.full.outcome === "error") expect(r.full.message).toMatch(/GGML_ASSERT\(n_embd_head == hparams.n_embd_head_k\(\)\)/);
  });
});

describe("fuzz slice", () => {
  it("200 fixed-seed cases: typed errors or generation, no crash, hang or untyped error", async () => {
    const report = await runGgufFuzz({ model, count: 200, seed: 20240601, timeoutMs: 30_000, childScript: child });
    expect(report.crashes.map((c) => ({ index: c.index, mutations: c.mutations, signal: c.signal, stderr: c.stderr?.slice(-300) }))).toEqual([]);
    expect(report.hangs.map((c) => ({ index: c.index, mutations: c.mutations }))).toEqual([]);
    expect(report.untypedErrors.map((c) => ({ index: c.index, mutations: c.mutations, full: c.full, vocabOnly: c.vocabOnly }))).toEqual([]);
    expect(report.results.ok).toBeGreaterThan(10);
    expect(report.results.errors.INVALID_MODEL).toBeGreaterThan(50);
  });
});
