/**
 * RPC devices: a model's layers on other machines, through llama.cpp's ggml
 * RPC backend. Each remote machine runs `genai-native rpc-server` (or
 * llama.cpp's own `rpc-server` of the same version); a load names them:
 *
 *   const model = await LlamaModel.load("model.gguf", { rpcServers: ["10.0.0.2:50052"], tensorSplit: [3, 1] });
 *
 * The servers' devices come first in the load's device list (then the local
 * GPUs; the CPU holds what is not offloaded), as in llama.cpp.
 *
 * Failures are typed, never a crash or a hang (native/system/rpc_relay.h): a
 * server that is down or does not answer its handshake within
 * `rpcTimeouts.connectMs` fails the load with BACKEND_ERROR naming it; one
 * that goes away, or does not answer within `rpcTimeouts.callMs`, while a
 * model uses it ends the generation in flight with BACKEND_ERROR, and every
 * later call on that model too: its layers there are gone, so dispose it and
 * load it again.
 *
 * ggml RPC has no authentication and no encryption: anyone who reaches a
 * server's port can use its devices and read what it holds. Keep servers on
 * loopback or a trusted network (or behind an SSH tunnel / WireGuard).
 */
import { native } from "../binding/load";
import type { NativeRpcDevice, RpcTimeouts } from "../binding/types";
import { GenaiError } from "../errors";
import { optInt, options as validOptions, optionKeys } from "../util/validate";

export type { RpcTimeouts } from "../binding/types";
/** A device of an RPC server: name ("RPC0"), server, memory in bytes as of the last refresh, whether its link failed. */
export type RpcDevice = NativeRpcDevice;

/** ggml-rpc's limit on servers per process (GGML_RPC_MAX_SERVERS). */
export const MAX_RPC_SERVERS = 16;
/** rpc-server's default port (llama.cpp tools/rpc). */
export const DEFAULT_RPC_PORT = 50052;

const TIMEOUT_KEYS = optionKeys<RpcTimeouts>()("connectMs", "callMs");

/**
 * Checks a list of "host:port" strings (host: a name or IPv4 address; port
 * 1–65535; at most {@link MAX_RPC_SERVERS}; no repeats) and returns a copy.
 * @throws GenaiError INVALID_ARGUMENT naming the bad entry
 */
export function checkRpcServers(name: string, value: unknown): string[] {
  if (!Array.isArray(value)) throw new GenaiError("INVALID_ARGUMENT", `${name} must be an array of "host:port" strings`);
  if (value.length > MAX_RPC_SERVERS) throw new GenaiError("INVALID_ARGUMENT", `${name} has more than ${MAX_RPC_SERVERS} servers (GGML_RPC_MAX_SERVERS)`);
  const out: string[] = [];
  for (const e of value) {
    if (typeof e !== "string") throw new GenaiError("INVALID_ARGUMENT", `${name} must be an array of "host:port" strings`);
    const m = /^([^\s/:@]+):(\d{1,5})$/.exec(e);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) throw new GenaiError("INVALID_ARGUMENT", `${name}: "${e}" is not host:port (port 1-65535)`);
    if (out.includes(e)) throw new GenaiError("INVALID_ARGUMENT", `${name} names ${e} twice`);
    out.push(e);
  }
  return out;
}

/** Checks `{ connectMs, callMs }` (integers, ms; connect ≤ 1 h, call ≤ 24 h). @throws GenaiError INVALID_ARGUMENT */
export function checkRpcTimeouts(name: string, value: unknown): RpcTimeouts | undefined {
  if (value === undefined) return undefined;
  const o = validOptions(name, value, TIMEOUT_KEYS) as RpcTimeouts;
  const out: RpcTimeouts = {};
  if (o.connectMs !== undefined) out.connectMs = optInt(`${name}.connectMs`, o.connectMs, 5000, 1, 3_600_000);
  if (o.callMs !== undefined) out.callMs = optInt(`${name}.callMs`, o.callMs, 60_000, 1, 86_400_000);
  return out;
}

/**
 * The servers of `GENAI_NATIVE_RPC` ("host:port,host:port"): every load's
 * default `rpcServers`. Empty when unset.
 * @throws GenaiError INVALID_ARGUMENT when the variable is malformed
 */
export function rpcServersFromEnv(): string[] {
  const v = process.env.GENAI_NATIVE_RPC?.trim();
  if (!v) return [];
  return checkRpcServers(
    "GENAI_NATIVE_RPC",
    v.split(",").map((s) => s.trim()),
  );
}

/**
 * Connects to rpc-servers ahead of any load, so that {@link rpcDevices},
 * systemInfo() and the orchestrator's budgets list their devices. Loads
 * connect by themselves; a server already connected is reused.
 * @throws GenaiError INVALID_ARGUMENT (a bad endpoint), BACKEND_ERROR (a server down, not answering, another protocol version)
 */
export async function connectRpcServers(servers: string[], timeouts?: RpcTimeouts): Promise<void> {
  const rpcServers = checkRpcServers("servers", servers);
  const rpcTimeouts = checkRpcTimeouts("timeouts", timeouts);
  await native().connectRpcServers(rpcTimeouts ? { rpcServers, rpcTimeouts } : { rpcServers });
}

/** The devices of every RPC server connected so far (memory in bytes as of the last refresh; see {@link refreshRpcDevices}). */
export function rpcDevices(): RpcDevice[] {
  return native().rpcDevices();
}

/** Asks each healthy RPC server for its devices' free and total memory (off the JS thread). */
export async function refreshRpcDevices(): Promise<void> {
  await native().refreshRpcDevices();
}

/** The placement fields of a load (or a memory measurement), checked, absent ones left out. */
export interface PlacementParams {
  rpcServers?: string[];
  rpcTimeouts?: RpcTimeouts;
  tensorSplit?: number[];
}

/**
 * Checks `rpcServers` (default {@link rpcServersFromEnv}), `rpcTimeouts` and
 * `tensorSplit` (1 to 16 finite shares ≥ 0, not all zero: llama_max_devices()
 * is 16) of a load's options.
 * @throws GenaiError INVALID_ARGUMENT naming the field
 */
export function checkPlacement(o: { rpcServers?: unknown; rpcTimeouts?: unknown; tensorSplit?: unknown }): PlacementParams {
  const out: PlacementParams = {};
  const servers = o.rpcServers === undefined ? rpcServersFromEnv() : checkRpcServers("rpcServers", o.rpcServers);
  if (servers.length) out.rpcServers = servers;
  const timeouts = checkRpcTimeouts("rpcTimeouts", o.rpcTimeouts);
  if (timeouts) out.rpcTimeouts = timeouts;
  if (o.tensorSplit !== undefined) {
    const v = o.tensorSplit;
    if (!Array.isArray(v) || v.length < 1 || v.length > 16) throw new GenaiError("INVALID_ARGUMENT", "tensorSplit must be an array of 1 to 16 numbers");
    out.tensorSplit = v.map((x, i) => {
      if (typeof x !== "number" || !Number.isFinite(x) || x < 0 || x > 1e6)
        throw new GenaiError("INVALID_ARGUMENT", `tensorSplit[${i}] must be a finite number in [0, 1e6]`);
      return x;
    });
    if (!out.tensorSplit.some((x) => x > 0)) throw new GenaiError("INVALID_ARGUMENT", "tensorSplit must not be all zero");
  }
  return out;
}
