// llama-server (built from deps/llama.cpp with the addon's flags) as the
// benchmarks' process-model baseline: spawn on loopback, poll /health, stream
// a completion. Times are performance.now() of the calling process.
import { spawn } from "node:child_process";

export const randomPort = () => 18000 + Math.floor(Math.random() * 1000);

/**
 * Spawns llama-server on 127.0.0.1:`port`, flash attention off (as the addon's
 * runs): `slots` request slots (-np, default 1) sharing `contextSize` tokens,
 * `threads` for generation and batches; `extra` arguments appended (-b, -ngl, --chat-template …).
 */
export function startLlamaServer(server, { model, contextSize, threads, port, slots = 1, extra = [] }) {
  const args = ["-m", model, "-c", String(contextSize), "-t", String(threads), "-tb", String(threads), "--host", "127.0.0.1", "--port", String(port)];
  return spawn(server, [...args, "-fa", "off", "--no-webui", "-np", String(slots), ...extra], { stdio: "ignore" });
}

/** Resolves when GET /health answers 200 (polled every `pollMs`); throws after `timeoutMs`. */
export async function waitHealthy(port, { timeoutMs = 120_000, pollMs = 5 } = {}) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) return;
    } catch {}
    if (performance.now() > deadline) throw new Error("llama-server did not become healthy");
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** POST /completion streamed with `body` (prompt, n_predict, ...); the time its first token arrived. Reads the stream to its end. */
export async function firstStreamedToken(port, body) {
  const res = await fetch(`http://127.0.0.1:${port}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ temperature: 0, ...body, stream: true }),
  });
  const reader = res.body.getReader();
  let first = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!first && new TextDecoder().decode(value).includes('"content"')) first = performance.now();
  }
  return first;
}

export async function killServer(p) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill("SIGKILL");
  await new Promise((r) => p.once("exit", r));
}
