#!/usr/bin/env node
// npm run fuzz:mmproj -- [COUNT] [SEED]
// Mutated multimodal projectors: a generated LLaVA-style mmproj (generateRandomMmproj)
// with its clip.* metadata changed (values 0, 1, odd, huge, NaN, removed keys, other
// projector types, short arrays) or mutated by the GGUF fuzzer (lib/tools/fuzz), each
// loaded in a child process beside a generated text model (LlamaModel.load({ mmproj }))
// and given one chat with an image. Prints JSON: outcomes by code, and every case that
// crashed, hung or failed untyped (with its mutation). Exit status 1 when any did.
// Needs `npm run build:ts` (runs from dist/).
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const root = path.resolve(__dirname, "..");
const doc = require(root + "/dist/cjs/tools/fuzz/gguf-doc.js");
const mut = require(root + "/dist/cjs/tools/fuzz/mutate.js");
const mode = process.argv[2];
async function child() {
  const g = require(root);
  (async () => {
    try {
      const m = await g.LlamaModel.load(process.argv[3], { mmproj: process.argv[4], device: "cpu" });
      const ctx = await m.createContext({ contextSize: 512, threads: 1 });
      const r = await ctx.chat(
        [
          {
            role: "user",
            content: [
              { type: "image", image: fs.readFileSync(process.argv[5]) },
              { type: "text", text: "x" },
            ],
          },
        ],
        { maxTokens: 2, temperature: 0 },
      ).result;
      console.log(JSON.stringify({ outcome: "ok", tokens: r.tokenCount }));
      await m.dispose();
    } catch (e) {
      console.log(JSON.stringify({ outcome: "error", code: e.code, typed: e instanceof g.GenaiError, message: String(e.message).slice(0, 200) }));
    }
  })();
}

async function main() {
  const os = require("node:os");
  const tools = require(root + "/dist/cjs/tools/index.js");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-fuzz-mmproj-"));
  const text = path.join(dir, "text.gguf"),
    proj = path.join(dir, "mmproj.gguf"),
    img = path.join(dir, "img.png");
  await tools.generateRandomLlamaModel(text, tools.PRESETS.tiny, { chatTemplate: true, seed: 3 });
  await tools.generateRandomMmproj(proj, { textEmbd: tools.PRESETS.tiny.embd, seed: 5 });
  const { PNG } = require(path.join(root, "node_modules", "pngjs"));
  const png = new PNG({ width: 40, height: 23 });
  for (let i = 0; i < 40 * 23; i++) png.data.set([(i * 7) & 255, (i * 13) & 255, (i * 29) & 255, 255], 4 * i);
  fs.writeFileSync(img, PNG.sync.write(png));
  const base = doc.parseGguf(fs.readFileSync(proj));
  const N = Number(process.argv[2] ?? 100);
  const SEED = Number(process.argv[3] ?? 0);
  const rng = (seed) => {
    let s = seed;
    return () => {
      s = (s * 1103515245 + 12345) >>> 0;
      return s / 2 ** 32;
    };
  };
  const counts = {};
  const bad = [];
  for (let i = 0; i < N; i++) {
    const r = rng(1000 + SEED * 100003 + i);
    let bytes, desc;
    if (r() < 0.6) {
      const d = doc.cloneDoc(base);
      const keys = d.kv.filter((k) => k.key.startsWith("clip."));
      const k = keys[Math.floor(r() * keys.length)];
      const choice = r();
      if (choice < 0.15) {
        d.kv = d.kv.filter((x) => x !== k);
        desc = `remove ${k.key}`;
      } else if (k.value.type === 8) {
        const v = ["mlp", "ldp", "gemma3", "idefics3", "pixtral", "qwen2vl_merger", "lfm2", "", "x"][Math.floor(r() * 9)];
        k.value = { type: 8, value: v };
        desc = `${k.key}=${v}`;
      } else if (k.value.type === 9) {
        k.value = { ...k.value, items: k.value.items.slice(0, Math.floor(r() * 3)) };
        desc = `${k.key} short array`;
      } else {
        const v = [0, 1, 2, 3, 7, 13, 0xffffffff, 65536, 1e9][Math.floor(r() * 9)];
        k.value = { ...k.value, value: k.value.type === 6 ? [0, -1, 1e30, NaN][Math.floor(r() * 4)] : v };
        desc = `${k.key}=${k.value.value}`;
      }
      try {
        bytes = doc.serializeGguf(d);
      } catch (_e) {
        continue;
      }
    } else {
      const c = mut.mutateGguf(base, 5000 + SEED * 100003 + i);
      bytes = c.bytes;
      desc = c.mutations.join("; ");
    }
    const f = path.join(dir, `c${i}.gguf`);
    fs.writeFileSync(f, bytes);
    const p = spawnSync(process.execPath, [__filename, "child", text, f, img], { encoding: "utf8", timeout: 60000 });
    fs.rmSync(f, { force: true });
    let out;
    try {
      out = JSON.parse(p.stdout.trim().split("\n").pop());
    } catch {
      out = { outcome: p.signal ? `signal ${p.signal}` : p.status === null ? "hang" : `exit ${p.status}` };
    }
    const key = out.outcome === "error" ? `${out.code}${out.typed ? "" : " (untyped)"}` : out.outcome;
    counts[key] = (counts[key] ?? 0) + 1;
    if (!["ok", "INVALID_MODEL", "INVALID_ARGUMENT", "BACKEND_ERROR", "MODEL_NOT_FOUND"].includes(key))
      bad.push({ i, desc, out: out.message ?? out.outcome, stderr: (p.stderr || "").slice(-300) });
  }
  console.log(JSON.stringify({ count: N, seed: SEED, counts, bad }, null, 1));
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(bad.length ? 1 : 0);
}

if (mode === "child") child();
else main();
