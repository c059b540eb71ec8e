/** What the engine sees of this machine: ggml devices with free/total memory, backends, versions. */
import { native, type NativeSystemInfo, type NativeVersions } from "../native";
import { GenaiError } from "../errors";
import { backendStatus, type BackendModuleStatus } from "./backends";
export { initBackends, backendStatus, deviceFor, probeBackendModule, GPU_BACKENDS, type BackendModuleStatus, type BackendState, type InitBackendsOptions } from "./backends";

export type { NativeDevice as Device, NativeSystemInfo as SystemInfo, NativeVersions as Versions } from "../native";

/** systemInfo(): what the engine sees, plus each backend module's state. */
export interface SystemInfoWithBackends extends NativeSystemInfo {
  /**
   * Every backend genai-native knows (cpu, cuda, metal, vulkan): "loaded" with
   * its devices, or why not — absent from this build, disabled, failed to load
   * (e.g. no driver), crashed in its probe, no device. Undefined until
   * initBackends() has run (any model load runs it).
   */
  backendModules?: BackendModuleStatus[];
}

/**
 * Devices (name, type, backend, freeBytes/totalBytes) of the backends
 * registered so far, backends, CPU threads and features, versions, and each
 * backend module's state (see {@link initBackends}; call and await it first
 * for the GPU devices).
 */
export function systemInfo(): SystemInfoWithBackends {
  return { ...native().systemInfo(), backendModules: backendStatus() };
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
