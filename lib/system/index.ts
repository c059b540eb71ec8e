/** What the engine sees of this machine: ggml devices with free/total memory, backends, versions. */
import { native, type NativeSystemInfo, type NativeVersions } from "../native";
import { GenaiError } from "../errors";

export type { NativeDevice as Device, NativeSystemInfo as SystemInfo, NativeVersions as Versions } from "../native";

/** Devices (name, type, backend, freeBytes/totalBytes), backends, CPU threads and features, versions. */
export function systemInfo(): NativeSystemInfo {
  return native().systemInfo();
}

/** Addon version, llama.cpp source identity (commit, npm package it came from), ggml version. */
export function versions(): NativeVersions {
  return native().versions();
}

/** Which engines this build has: `llm` (llama.cpp) and `diffusion` (stable-diffusion.cpp). */
export function capabilities(): { llm: boolean; diffusion: boolean } {
  return { ...native().capabilities };
}

export type LogLevel = "debug" | "info" | "warn" | "error" | "none";

/** llama.cpp/ggml log lines at or above `level` go to stderr (default "error"; env GENAI_NATIVE_LOG). */
export function setLogLevel(level: LogLevel): void {
  if (!["debug", "info", "warn", "error", "none"].includes(level)) throw new GenaiError("INVALID_ARGUMENT", `unknown log level ${String(level)}`);
  native().setLogLevel(level);
}
