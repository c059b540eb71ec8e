import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PNG } from "pngjs";
import { resolveModel } from "../lib/models/resolver";
import { GgmlType } from "../lib/tools/gguf/writer";

/** stories260K through the project's resolver (no downloads in tests). */
export function storiesPath(): Promise<string> {
  return resolveModel(undefined, { download: false });
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = "genai-native-test-"): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Cores for inference in tests: leave one to the event loop. */
export const THREADS = Math.max(1, (os.availableParallelism?.() ?? os.cpus().length) - 1);

/**
 * llama.cpp's own CLI for libmtmd, built from the same sources
 * (`node scripts/build-addon.mjs --target llama-mtmd-cli`, which .ci/run does):
 * beside the addon in build/Release, or in build/bin where llama.cpp's tools
 * folder is configured (GENAI_BENCH_SERVER). Undefined when not built.
 */
export const MTMD_CLI = (() => {
  const root = path.resolve(__dirname, "..");
  if (!fs.existsSync(path.join(root, "build", "Release", "genai_native.node"))) return undefined;
  return [path.join(root, "build", "Release", "llama-mtmd-cli"), path.join(root, "build", "bin", "llama-mtmd-cli")].find((p) => fs.existsSync(p));
})();

/**
 * Runs llama-mtmd-cli (single turn: one user message, a media marker per image
 * before `prompt`, greedy, on the CPU) in the addon's folder, where ggml finds its backend
 * modules. Returns its exit status, generated text (stdout), log, and the image
 * tokens it decoded (mtmd-helper.cpp's "n_tokens_batch = N" lines, summed) and
 * the projector's output width (clip.cpp's "output embedding shape [E, N, 1]").
 */
export function runMtmdCli(o: { model: string; mmproj: string; images: string[]; prompt: string; tokens: number; contextSize?: number }): {
  status: number | null;
  text: string;
  log: string;
  imageTokens: number;
  embd: number;
} {
  if (!MTMD_CLI) throw new Error("llama-mtmd-cli is not built");
  const args = ["-m", o.model, "--mmproj", o.mmproj, ...o.images.flatMap((i) => ["--image", i]), "-p", o.prompt, "-n", String(o.tokens), "--temp", "0"];
  // on the CPU, as the tests load their models (a Vulkan device named in the environment is not used)
  args.push("-t", String(THREADS), "-c", String(o.contextSize ?? 512), "-v", "-dev", "none", "-ngl", "0", "--no-mmproj-offload");
  const r = spawnSync(MTMD_CLI, args, { cwd: path.join(path.resolve(__dirname, ".."), "build", "Release"), encoding: "utf8", timeout: 120_000 });
  const log = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  const imageTokens = [...log.matchAll(/n_tokens_batch = (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  const shape = /output embedding shape \[(\d+), (\d+)/.exec(log);
  return { status: r.status, text: r.stdout ?? "", log, imageTokens, embd: shape ? Number(shape[1]) : 0 };
}

/** A PNG of width × height with a pattern that `seed` varies (pngjs). */
export function writeTestPng(file: string, width: number, height: number, seed = 0): Buffer {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) {
    png.data[4 * i] = (i * (7 + seed)) & 255;
    png.data[4 * i + 1] = (i * (13 + 3 * seed)) & 255;
    png.data[4 * i + 2] = (i * (29 + 5 * seed)) & 255;
    png.data[4 * i + 3] = 255;
  }
  const bytes = PNG.sync.write(png);
  fs.writeFileSync(file, bytes);
  return bytes;
}

/**
 * A safetensors header for a generator's tensor plan (ggml shapes, reversed
 * into row-major), F32 / F16 (any other type written as F16): a sparse file
 * of the full size, so the real widths cost no disk. Returns the tensor data's bytes.
 */
export function writePlanHeader(file: string, specs: readonly { name: string; shape: number[]; type: GgmlType }[], prefix = ""): number {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const t of specs) {
    const f32 = t.type === GgmlType.F32;
    const n = t.shape.reduce((a, b) => a * b, 1) * (f32 ? 4 : 2);
    header[prefix + t.name] = { dtype: f32 ? "F32" : "F16", shape: [...t.shape].reverse(), data_offsets: [at, at + n] };
    at += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json]));
  fs.truncateSync(file, 8 + json.length + at);
  return at;
}
