import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

// Shared by the benchmark runners: argument parsing and a seeded prompt.
export function args() {
  return JSON.parse(process.argv[2]);
}

/** `n` pseudo-random token ids in [3, vocab), reproducible (mulberry32). */
export function randomTokens(n, vocab, seed = 1) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Int32Array.from({ length: n }, () => 3 + Math.floor(next() * (vocab - 3)));
}

export function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** { min, max } of the samples: the noise a median hides. */
export function spread(xs) {
  return { min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * A generated random-weight model for `spec` = PRESET[:TYPE] (type q8_0 when
 * omitted), written once to bench/out/random-PRESET-TYPE.gguf. Needs `npm run build:ts`.
 */
export function generatedModel(root, spec) {
  const [preset, type = "q8_0"] = spec.split(":");
  const out = path.join(root, "bench", "out", `random-${preset}-${type}.gguf`);
  if (!fs.existsSync(out)) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    process.stderr.write(`[bench] generating ${out}\n`);
    execFileSync(process.execPath, [path.join(root, "dist", "cjs", "tools", "gen-model.js"), "--preset", preset, "--type", type, "--out", out], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  return out;
}

/**
 * build/Release/NAME, one of llama.cpp's tools built from deps/llama.cpp with
 * the addon's flags (CMakeLists.txt: llama-bench always, llama-server with
 * GENAI_BENCH_SERVER=ON); built here when missing.
 */
export function llamaToolPath(root, name) {
  const p = path.join(root, "build", "Release", name);
  if (!fs.existsSync(p)) {
    process.stderr.write(`[bench] building ${name} from deps/llama.cpp (same CMake flags as the addon)\n`);
    const extra = name === "llama-server" ? ["--", "--CDGENAI_BENCH_SERVER=ON"] : [];
    execFileSync(process.execPath, [path.join(root, "scripts", "build-addon.mjs"), "--target", name, ...extra], { stdio: ["ignore", "ignore", "inherit"] });
  }
  if (!fs.existsSync(p)) throw new Error(`${name} was not built`);
  return p;
}
