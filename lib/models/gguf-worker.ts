/**
 * GGUF header parsing off the JS thread. @huggingface/gguf parses on the
 * thread that calls it: for a 152,000-token vocabulary that is 200–360 ms of
 * blocked event loop. Here one worker_thread (started on first use, unref'd
 * while idle so it never keeps the process alive) parses and sends back the
 * metadata with every array replaced by its length — the summary needs only
 * the vocabulary's size, never the strings.
 */
import { Worker } from "node:worker_threads";

/** A metadata value as the worker sends it: arrays as `{ arrayLength }`. */
export type ParsedValue = string | number | bigint | boolean | { arrayLength: number };

export interface ParsedHeader {
  metadata: Record<string, ParsedValue>;
  tensorCount: number;
  parameterCount: number;
  tensorDataOffset: number;
  /** Only when asked for (parseGgufHeaderOffThread's `tensors`): each tensor's name, shape (ne[0] first) and data offset in bytes from tensorDataOffset. */
  tensors?: { name: string; shape: number[]; offset: number }[];
}

// CommonJS run by the worker; workerData.gguf is @huggingface/gguf's absolute entry
// (resolved here, so it works from dist/, from sources under vitest and inside an app).
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { gguf } = require(workerData.gguf);
parentPort.on("message", async ({ id, path, tensors }) => {
  try {
    const p = await gguf(path, { allowLocalFile: true, computeParametersCount: true });
    const metadata = {};
    for (const [k, v] of Object.entries(p.metadata)) metadata[k] = Array.isArray(v) ? { arrayLength: v.length } : v;
    const value = { metadata, tensorCount: p.tensorInfos.length, parameterCount: p.parameterCount, tensorDataOffset: Number(p.tensorDataOffset) };
    if (tensors) value.tensors = p.tensorInfos.map((t) => ({ name: t.name, shape: t.shape.map(Number), offset: Number(t.offset) }));
    parentPort.postMessage({ id, ok: true, value });
  } catch (e) {
    parentPort.postMessage({ id, ok: false, message: String((e && e.message) || e) });
  }
});
`;

let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { resolve: (v: ParsedHeader) => void; reject: (e: Error) => void }>();

function failAll(e: Error): void {
  worker = undefined;
  for (const p of pending.values()) p.reject(e);
  pending.clear();
}

function getWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { gguf: require.resolve("@huggingface/gguf") } });
  w.on("message", (m: { id: number; ok: boolean; value?: ParsedHeader; message?: string }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (m.ok) p.resolve(m.value as ParsedHeader);
    else p.reject(new Error(m.message));
  });
  w.on("error", (e) => failAll(e));
  w.on("exit", (code) => {
    if (worker === w) failAll(new Error(`GGUF parser worker exited (${code})`));
  });
  worker = w;
  return w;
}

/**
 * Parses a GGUF header (metadata and tensor infos, no tensor data) on a
 * worker thread; with `tensors`, the tensor list comes back too (ParsedHeader.tensors).
 * @throws Error with @huggingface/gguf's message when it cannot be parsed.
 */
export function parseGgufHeaderOffThread(path: string, opts: { tensors?: boolean } = {}): Promise<ParsedHeader> {
  const w = getWorker();
  const id = nextId++;
  w.ref();
  return new Promise<ParsedHeader>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.postMessage({ id, path, tensors: opts.tensors === true });
  });
}
