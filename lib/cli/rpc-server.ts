/**
 * genai-native rpc-server [--host 127.0.0.1] [--port 50052] [--device cpu|vulkan|cuda|NAME] [--threads N] [--cache DIR]
 *
 * Serves this machine's device to other machines' loads (`rpcServers`,
 * lib/system/rpc.ts): llama.cpp's RPC server (ggml_backend_rpc_start_server,
 * from the addon's ggml-rpc module, protocol of the same llama.cpp version)
 * on a native thread of this process, until SIGINT/SIGTERM. It serves one
 * client at a time. `--cache DIR` keeps large tensors (≥ 10 MiB) by hash, so
 * a client loading the same model again sends only their hashes.
 *
 * No authentication, no encryption: anyone who reaches the port can use the
 * device and read its memory. It binds 127.0.0.1 by default and warns when
 * bound elsewhere; use it on a trusted network, or reach it through an SSH
 * tunnel or WireGuard.
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { native } from "../binding/load";
import { GenaiError } from "../errors";
import { initBackends, resolveDevice } from "../system/backends";
import { DEFAULT_RPC_PORT } from "../system/rpc";

export async function rpcServer(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: String(DEFAULT_RPC_PORT) },
      device: { type: "string", default: "cpu" },
      threads: { type: "string" },
      cache: { type: "string" },
    },
  });
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || port < 1 || port > 65535)
    throw new GenaiError("INVALID_ARGUMENT", `--port must be an integer in 1-65535 (got ${values.port})`);
  const threads = values.threads === undefined ? (os.availableParallelism?.() ?? os.cpus().length) : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024)
    throw new GenaiError("INVALID_ARGUMENT", `--threads must be an integer in 1-1024 (got ${values.threads})`);
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(values.host)) throw new GenaiError("INVALID_ARGUMENT", `--host must be an IPv4 address (got ${values.host})`);
  if (values.device !== "cpu") await initBackends();
  const device = values.device === "cpu" ? "cpu" : resolveDevice(values.device);
  if (values.host !== "127.0.0.1")
    process.stderr.write(
      `genai-native rpc-server: WARNING: listening on ${values.host}: ggml RPC has no authentication and no encryption — ` +
        "anyone who reaches this port can use the device and read its memory. Use a trusted network, an SSH tunnel or WireGuard.\n",
    );
  const stopped = native().startRpcServer(values.host, port, { device, threads, ...(values.cache ? { cache: values.cache } : {}) });
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(0));
  await stopped;
}
