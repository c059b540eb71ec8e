#!/usr/bin/env node
// Builds build/Release/genai_native.node with cmake-js (Release, ccache when
// present), after making sure deps/llama.cpp is populated, with its shared
// libraries and backend modules beside it.
// Usage: node scripts/build-addon.mjs [--target NAME] [--force] [-- extra cmake-js args]
// Environment:
//   GENAI_NATIVE_GPU=auto|none|vulkan,cuda,metal   GPU backend modules to build. auto (default):
//       Vulkan when Vulkan headers and a glslc recent enough for llama.cpp's ggml-vulkan are installed
//       (GENAI_VULKAN_INCLUDE / GENAI_GLSLC name them; scripts/debian-vulkan-tools.sh provides both on
//       Debian 12), Metal on macOS;
//       CUDA only when named
//       (its build is long: GENAI_CUDA_ARCHS limits the architectures, default 75;86;89;90;
//       GENAI_CUBLAS_ROOT supplies cuBLAS when the toolkit lacks it, see cudaDefines).
//   GENAI_NATIVE_CPU_VARIANTS=native|all   one CPU module tuned to this machine (default), or
//       every x86/ARM variant, ggml choosing the best at run time (what prebuilds ship).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
const extra = sep >= 0 ? argv.slice(sep + 1) : [];
const own = sep >= 0 ? argv.slice(0, sep) : argv;
const targetIdx = own.indexOf("--target");
const target = targetIdx >= 0 ? own[targetIdx + 1] : null;

execFileSync(process.execPath, [path.join(root, "scripts", "fetch-llama.mjs")], { stdio: "inherit", cwd: root });

// Paths inside the tree are hashed relative to the root, so clones at other
// paths (CI) share one ccache.
const env = { ...process.env, CCACHE_BASEDIR: process.env.CCACHE_BASEDIR ?? root, CCACHE_NOHASHDIR: "true" };
const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
function onPath(cmd) {
  return (process.env.PATH ?? "").split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, process.platform === "win32" ? `${cmd}.exe` : cmd)));
}
// The Vulkan module's tools: GENAI_GLSLC / GENAI_VULKAN_INCLUDE, else glslc on
// PATH and the system's headers (scripts/debian-vulkan-tools.sh sets both on Debian 12).
// Tools that scripts/debian-vulkan-tools.sh unpacked before are used without
// its env, so that a plain rebuild keeps the Vulkan module.
const unpacked = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "genai-native", "vulkan-tools");
const unpackedOk =
  !process.env.GENAI_GLSLC &&
  fs.existsSync(path.join(unpacked, "glslc")) &&
  fs.existsSync(path.join(unpacked, "root", "usr", "include", "vulkan", "vulkan_core.h"));
const glslc = process.env.GENAI_GLSLC || (unpackedOk ? path.join(unpacked, "glslc") : onPath("glslc") ? "glslc" : null);
const vulkanInclude = [
  process.env.GENAI_VULKAN_INCLUDE,
  unpackedOk && path.join(unpacked, "root", "usr", "include"),
  process.env.VULKAN_SDK && path.join(process.env.VULKAN_SDK, "include"),
  "/usr/include",
  "/usr/local/include",
].find((d) => d && fs.existsSync(path.join(d, "vulkan", "vulkan_core.h")));
const VULKAN_HOWTO = 'on Debian 12: eval "$(bash scripts/debian-vulkan-tools.sh)"';
/** Why the Vulkan module cannot be built with these tools (llama.cpp's ggml-vulkan needs cooperative-matrix support in both), or null. Runs glslc once. */
let vulkanWhy;
function vulkanProblem() {
  if (vulkanWhy === undefined) vulkanWhy = findVulkanProblem();
  return vulkanWhy;
}
function findVulkanProblem() {
  if (!vulkanInclude) return `no Vulkan headers (install libvulkan-dev, or set GENAI_VULKAN_INCLUDE; ${VULKAN_HOWTO})`;
  if (!glslc) return `no glslc (install it, or set GENAI_GLSLC; ${VULKAN_HOWTO})`;
  if (!fs.readFileSync(path.join(vulkanInclude, "vulkan", "vulkan_core.h"), "utf8").includes("VkPhysicalDeviceCooperativeMatrixFeaturesKHR"))
    return `the Vulkan headers in ${vulkanInclude} are older than 1.3.255 (no VK_KHR_cooperative_matrix; ${VULKAN_HOWTO})`;
  return glslcProblem(glslc);
}
/** Why `cmd` cannot compile llama.cpp's Vulkan shaders (they need GL_KHR_cooperative_matrix), or null. */
function glslcProblem(cmd) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-glslc-"));
  try {
    const src = path.join(dir, "t.comp");
    fs.writeFileSync(
      src,
      [
        "#version 450",
        "#extension GL_KHR_cooperative_matrix : enable",
        "#extension GL_KHR_memory_scope_semantics : enable",
        "layout(local_size_x = 32) in;",
        "void main() { coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> m = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0); }",
      ].join("\n"),
    );
    execFileSync(cmd, ["--target-env=vulkan1.3", src, "-o", path.join(dir, "t.spv")], { stdio: "ignore" });
    return null;
  } catch {
    return `${cmd} cannot compile cooperative-matrix shaders (glslc from shaderc 2023.8 or newer is needed; ${VULKAN_HOWTO})`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
function gpuBackends() {
  const spec = (process.env.GENAI_NATIVE_GPU ?? "auto")
    .toLowerCase()
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  const known = ["vulkan", "cuda", "metal"];
  for (const g of spec)
    if (g !== "auto" && g !== "none" && !known.includes(g)) throw new Error(`GENAI_NATIVE_GPU: unknown backend ${g} (one of auto, none, ${known.join(", ")})`);
  if (spec.includes("none")) return [];
  if (!spec.includes("auto")) return spec;
  const auto = [];
  if (vulkanInclude && glslc) {
    const why = vulkanProblem();
    if (why) console.log(`[build-addon] no Vulkan module: ${why}`);
    else auto.push("vulkan");
  }
  if (process.platform === "darwin") auto.push("metal");
  return auto;
}
/**
 * ggml's x86 feature options for this machine's CPU (from /proc/cpuinfo), for
 * a one-module CPU build: ggml refuses GGML_NATIVE with GGML_BACKEND_DL on x86.
 * The module still checks the features when it loads (its score function).
 * null: not x86 Linux (ARM keeps GGML_NATIVE; other x86 systems build all variants).
 */
function x86Features() {
  if (process.platform !== "linux" || process.arch !== "x64") return null;
  let flags;
  try {
    const info = fs.readFileSync("/proc/cpuinfo", "utf8");
    flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? "").trim().split(/\s+/));
  } catch {
    return null;
  }
  const map = {
    SSE42: ["sse4_2"],
    AVX: ["avx"],
    AVX2: ["avx2"],
    BMI2: ["bmi2"],
    FMA: ["fma"],
    F16C: ["f16c"],
    AVX_VNNI: ["avx_vnni"],
    AVX512: ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
    AVX512_VBMI: ["avx512vbmi"],
    AVX512_VNNI: ["avx512_vnni"],
    AVX512_BF16: ["avx512_bf16"],
  };
  const features = Object.fromEntries(Object.entries(map).map(([feat, need]) => [feat, need.every((f) => flags.has(f))]));
  // AMX stays off even where /proc/cpuinfo lists it: on an Intel Xeon VM that
  // lists amx_tile/amx_int8, ggml-cpu's AMX q8_0 kernel died with SIGILL
  // (tilezero) in generation, which would take the host app down. The other
  // kernels (AVX-512 VNNI) run the same models. GENAI_NATIVE_AMX=1 turns it on.
  const amx = process.env.GENAI_NATIVE_AMX === "1";
  for (const [feat, flag] of [
    ["AMX_TILE", "amx_tile"],
    ["AMX_INT8", "amx_int8"],
    ["AMX_BF16", "amx_bf16"],
  ])
    features[feat] = amx && flags.has(flag);
  return features;
}
/**
 * CMake defines for the CUDA module beyond GGML_CUDA. ggml-cuda needs cuBLAS,
 * which some toolkit installs (a bare nvcc, a container's compiler-only
 * image) lack: GENAI_CUBLAS_ROOT may name a folder with include/cublas_v2.h and
 * lib/libcublas.so* (an unpacked NVIDIA "nvidia-cublas" wheel's nvidia/cu13
 * folder has that shape). Without the driver library (libcuda.so, or its stub
 * in lib64/stubs) the module is built without CUDA VMM (GGML_CUDA_NO_VMM: a
 * cudaMalloc pool instead of virtual-memory reservations). NCCL stays off: the
 * module must not depend on a library users do not have.
 */
function cudaDefines() {
  const nvcc = [
    process.env.CUDACXX,
    ...[process.env.CUDA_PATH, process.env.CUDA_HOME].map((d) => d && path.join(d, "bin", "nvcc")),
    ...(process.env.PATH ?? "").split(path.delimiter).map((d) => d && path.join(d, "nvcc")),
    "/usr/local/cuda/bin/nvcc",
  ].find((f) => f && fs.existsSync(f));
  if (!nvcc) throw new Error("GENAI_NATIVE_GPU names cuda, but no nvcc was found (install the CUDA toolkit, or set CUDA_PATH or CUDACXX)");
  const toolkit = path.resolve(path.dirname(fs.realpathSync(nvcc)), "..");
  const out = [`--CDCMAKE_CUDA_COMPILER=${nvcc}`, "--CDGGML_CUDA_NCCL=OFF"];
  const libDirs = ["lib64", "lib", path.join("targets", `${process.arch === "arm64" ? "sbsa" : "x86_64"}-linux`, "lib")].map((d) => path.join(toolkit, d));
  const has = (dirs, re) => dirs.some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => re.test(f)));
  if (!fs.existsSync(path.join(toolkit, "include", "cublas_v2.h")) || !has(libDirs, /^libcublas\.so/)) {
    const root = process.env.GENAI_CUBLAS_ROOT;
    const lib = (name) =>
      root &&
      fs.existsSync(path.join(root, "lib")) &&
      fs
        .readdirSync(path.join(root, "lib"))
        .filter((f) => f.startsWith(`lib${name}.so`))
        .map((f) => path.join(root, "lib", f))[0];
    if (!root || !fs.existsSync(path.join(root, "include", "cublas_v2.h")) || !lib("cublas") || !lib("cublasLt"))
      throw new Error(
        `GENAI_NATIVE_GPU names cuda, but the CUDA toolkit in ${toolkit} has no cuBLAS (install its cublas development package, or set GENAI_CUBLAS_ROOT to a folder with include/cublas_v2.h and lib/libcublas.so*)`,
      );
    out.push(
      `--CDCUDA_cublas_LIBRARY=${lib("cublas")}`,
      `--CDCUDA_cublasLt_LIBRARY=${lib("cublasLt")}`,
      `--CDCMAKE_CUDA_FLAGS=-I${path.join(root, "include")}`,
    );
    console.log(`[build-addon] cuBLAS from ${root}`);
  }
  const driverDirs = [...libDirs.map((d) => path.join(d, "stubs")), ...libDirs, "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib"];
  if (process.platform === "linux" && !has(driverDirs, /^libcuda\.so/)) {
    console.log("[build-addon] no libcuda.so (driver or toolkit stub) to link: the CUDA module is built without VMM (GGML_CUDA_NO_VMM)");
    out.push("--CDGGML_CUDA_NO_VMM=ON");
  }
  return out;
}
const gpu = gpuBackends();
const features = x86Features();
const wantAll = (process.env.GENAI_NATIVE_CPU_VARIANTS ?? "native") === "all";
const allVariants = wantAll || (process.arch === "x64" && !features);
console.log(
  `[build-addon] backends: cpu (${
    allVariants
      ? "all variants"
      : features
        ? Object.keys(features)
            .filter((f) => features[f])
            .join(" ") || "x86-64"
        : "native"
  })${gpu.length ? ", " + gpu.join(", ") : ""}`,
);
const defines = [
  `--CDGGML_VULKAN=${gpu.includes("vulkan") ? "ON" : "OFF"}`,
  `--CDGGML_CUDA=${gpu.includes("cuda") ? "ON" : "OFF"}`,
  `--CDGGML_METAL=${gpu.includes("metal") ? "ON" : "OFF"}`,
  `--CDGENAI_CPU_ALL_VARIANTS=${allVariants ? "ON" : "OFF"}`,
];
if (!allVariants && features) {
  defines.push("--CDGGML_NATIVE=OFF", ...Object.entries(features).map(([f, on]) => `--CDGGML_${f}=${on ? "ON" : "OFF"}`));
} else {
  defines.push(`--CDGGML_NATIVE=${allVariants ? "OFF" : "ON"}`);
}
if (gpu.includes("vulkan")) {
  const why = vulkanProblem();
  if (why) throw new Error(`GENAI_NATIVE_GPU names vulkan, but ${why}`);
  if (glslc !== "glslc") defines.push(`--CDVulkan_GLSLC_EXECUTABLE=${path.resolve(glslc)}`); // else CMake finds it on PATH
  if (process.env.GENAI_VULKAN_INCLUDE || unpackedOk) defines.push(`--CDVulkan_INCLUDE_DIR=${path.resolve(vulkanInclude)}`);
}
if (gpu.includes("cuda")) defines.push(...cudaDefines());
if (process.env.GENAI_CUDA_ARCHS) defines.push(`--CDGENAI_CUDA_ARCHS=${process.env.GENAI_CUDA_ARCHS}`);
// cmake-js applies defines only when it configures: configure again whenever they change
const stamp = path.join(root, "build", "genai-defines.json");
const wanted = JSON.stringify([...defines, ...extra]);
const configured = fs.existsSync(path.join(root, "build", "CMakeCache.txt")) && fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === wanted;
const base = ["--directory", root, "--config", "Release"];
if (!configured) {
  // modules of the previous configuration (another CPU variant set, a GPU backend now off)
  // would otherwise stay beside the addon and be loaded
  const release = path.join(root, "build", "Release");
  if (fs.existsSync(release))
    for (const f of fs.readdirSync(release))
      if (/^(lib)?ggml-[\w-]+\.(so|dll|dylib)$/.test(f) && f !== "libggml-base.so" && f !== "ggml-base.dll") fs.rmSync(path.join(release, f));
  execFileSync(process.execPath, [cmakeJs, "configure", ...base, ...defines, ...extra], { stdio: "inherit", cwd: root, env });
  fs.writeFileSync(stamp, wanted);
}
const args = [cmakeJs, "build", ...base, "--parallel", jobs, ...defines];
if (target) args.push("--target", target);
args.push(...extra);
execFileSync(process.execPath, args, { stdio: "inherit", cwd: root, env });
// both engines in one binary: no symbol may be defined twice
if (!target) execFileSync(process.execPath, [path.join(root, "scripts", "check-symbols.mjs"), path.join(root, "build")], { stdio: "inherit", cwd: root });
