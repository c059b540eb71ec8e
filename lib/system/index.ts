/** What the engine sees of this machine: ggml devices with free/total memory, backends, versions. */
import { native } from "../binding/load";
import type { DeviceInfo, SystemInfoResult, VersionsInfo } from "../binding/types";
import { GenaiError } from "../errors";
import { backendStatus, type BackendModuleStatus } from "./backends";
import { rpcDevices } from "./rpc";
export {
  connectRpcServers,
  rpcDevices,
  refreshRpcDevices,
  rpcServersFromEnv,
  DEFAULT_RPC_PORT,
  MAX_RPC_SERVERS,
  type RpcDevice,
  type RpcTimeouts,
} from "./rpc";
export {
  initBackends,
  backendStatus,
  deviceFor,
  probeBackendModule,
  GPU_BACKENDS,
  type BackendModuleStatus,
  type BackendState,
  type InitBackendsOptions,
} from "./backends";

/** A ggml device: name ("CPU", "Vulkan0"), type, backend, freeBytes/totalBytes in bytes. */
export type Device = DeviceInfo;
/** What the engine sees of the machine (see {@link systemInfo}). */
export type SystemInfo = SystemInfoResult;
/** Addon version, llama.cpp source identity, ggml version, N-API version. */
export type Versions = VersionsInfo;

/** systemInfo(): what the engine sees, plus each backend module's state. */
export interface SystemInfoWithBackends extends SystemInfo {
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
 * registered so far and of the RPC servers connected so far (type "rpc",
 * with `endpoint`; memory as of lib/system/rpc.ts refreshRpcDevices), backends, CPU threads and features, versions, and each
 * backend module's state (see {@link initBackends}; call and await it first
 * for the GPU devices).
 */
export function systemInfo(): SystemInfoWithBackends {
  const info = native().systemInfo();
  // ggml's RPC backend registers with no devices of its own; each server's are listed here
  const rpc: Device[] = rpcDevices().map((d) => ({
    name: d.name,
    description: d.description,
    type: "rpc",
    backend: "RPC",
    freeBytes: d.failed ? 0 : d.freeBytes,
    totalBytes: d.totalBytes,
    endpoint: d.endpoint,
  }));
  return { ...info, devices: [...info.devices, ...rpc], backendModules: backendStatus() };
}

/** Addon version, llama.cpp source identity (commit, npm package it came from), ggml version. */
export function versions(): Versions {
  return native().versions();
}

/** Which engines this build has: `llm` (llama.cpp) and `diffusion` (stable-diffusion.cpp). */
export function capabilities(): { llm: boolean; diffusion: boolean } {
  return { ...native().capabilities };
}

export type LogLevel = "debug" | "info" | "warn" | "error" | "none";
/** The engine a log line comes from: llama.cpp, ggml (its tensor library and backends) or stable-diffusion.cpp. */
export type LogSource = "llama" | "ggml" | "sd";
/** Receives the engines' log lines (see {@link setLogger}). */
export type Logger = (level: Exclude<LogLevel, "none">, message: string, source: LogSource) => void;

/**
 * The lowest level of the engines' log lines that is delivered (to the
 * {@link setLogger} logger, or stderr): llama.cpp, ggml and
 * stable-diffusion.cpp alike. Default "error", or the env var
 * GENAI_NATIVE_LOG read once when the addon loads. Process-wide.
 */
export function setLogLevel(level: LogLevel): void {
  if (!["debug", "info", "warn", "error", "none"].includes(level)) throw new GenaiError("INVALID_ARGUMENT", `unknown log level ${String(level)}`);
  native().setLogLevel(level);
}

/**
 * Sends the engines' log lines to `fn` instead of stderr; `null` restores
 * stderr. `fn(level, message, source)` runs on this thread's event loop, later
 * than the engine logged (lines from engine threads are queued, never waited
 * for): `level` is "debug" | "info" | "warn" | "error", `message` one line
 * without its trailing newline, `source` "llama" | "ggml" | "sd". Only lines
 * at or above {@link setLogLevel}'s level arrive. When the logger falls far
 * behind, lines are dropped and a "warn" line says how many. An exception
 * thrown by `fn` becomes an uncaught exception (process "uncaughtException").
 *
 * The engines' logging is process-wide: there is one logger for the process,
 * on the thread (main or worker_thread) that set it last; `setLogger(null)`
 * from any thread removes it, and when that thread exits lines go to stderr
 * again. The logger never keeps the process alive; lines still queued when it
 * exits are lost.
 */
export function setLogger(fn: Logger | null): void {
  if (fn !== null && typeof fn !== "function") throw new GenaiError("INVALID_ARGUMENT", "logger must be a function or null");
  native().setLogger(
    fn &&
      ((level, message, source) => {
        try {
          fn(level, message, source);
        } catch (e) {
          // Node-API would only warn about an exception from a native callback
          queueMicrotask(() => {
            throw e;
          });
        }
      }),
  );
}
