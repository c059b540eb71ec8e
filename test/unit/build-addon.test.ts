// scripts/build-addon.mjs refuses a GPU build it cannot do with a message that
// says what is missing, before it configures anything.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers";

const root = path.resolve(__dirname, "..", "..");
const run = (env: Record<string, string>) => {
  const before = fs.existsSync(path.join(root, "build", "genai-defines.json")) ? fs.readFileSync(path.join(root, "build", "genai-defines.json"), "utf8") : null;
  const r = spawnSync(process.execPath, [path.join(root, "scripts", "build-addon.mjs")], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 120_000,
  });
  const after = fs.existsSync(path.join(root, "build", "genai-defines.json")) ? fs.readFileSync(path.join(root, "build", "genai-defines.json"), "utf8") : null;
  return { status: r.status, out: r.stdout + r.stderr, configured: before !== after };
};

describe.skipIf(process.platform === "win32")("build-addon.mjs GPU choices", () => {
  it("an unknown backend name is refused", () => {
    const r = run({ GENAI_NATIVE_GPU: "opencl9" });
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/GENAI_NATIVE_GPU: unknown backend opencl9/);
    expect(r.configured).toBe(false);
  });

  it("CUDA with a toolkit that lacks cuBLAS names GENAI_CUBLAS_ROOT, and checks what that folder holds", () => {
    const t = tempDir("genai-fake-cuda-");
    try {
      // a toolkit folder with an nvcc but no cuBLAS (like a compiler-only install)
      fs.mkdirSync(path.join(t.dir, "bin"));
      fs.mkdirSync(path.join(t.dir, "include"));
      fs.writeFileSync(path.join(t.dir, "bin", "nvcc"), "#!/bin/sh\nexit 1\n", { mode: 0o755 });
      const r = run({ GENAI_NATIVE_GPU: "cuda", CUDACXX: path.join(t.dir, "bin", "nvcc"), GENAI_CUBLAS_ROOT: "" });
      expect(r.status).not.toBe(0);
      expect(r.out).toContain(`the CUDA toolkit in ${fs.realpathSync(t.dir)} has no cuBLAS`);
      expect(r.out).toContain("GENAI_CUBLAS_ROOT");
      // a GENAI_CUBLAS_ROOT without the libraries is refused the same way
      const cublas = path.join(t.dir, "cublas");
      fs.mkdirSync(path.join(cublas, "include"), { recursive: true });
      fs.writeFileSync(path.join(cublas, "include", "cublas_v2.h"), "");
      const r2 = run({ GENAI_NATIVE_GPU: "cuda", CUDACXX: path.join(t.dir, "bin", "nvcc"), GENAI_CUBLAS_ROOT: cublas });
      expect(r2.status).not.toBe(0);
      expect(r2.out).toContain("has no cuBLAS");
      expect(r.configured || r2.configured).toBe(false);
    } finally {
      t.cleanup();
    }
  });
});
