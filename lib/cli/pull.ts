/**
 * genai-native pull [--inspect] REF | ls | rm REF — the model store (lib/models/store.ts)
 * from the command line, with a progress bar on stderr.
 */
import { GenaiError } from "../errors";
import type { DownloadProgress } from "../models/download";
import { ModelStore } from "../models/store";
import { ProgressLine } from "./progress-line";

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

function bar(line: ProgressLine, p: DownloadProgress & { index: number; count: number }): void {
  const f = p.totalBytes > 0 ? p.receivedBytes / p.totalBytes : 0;
  const width = 30;
  const filled = Math.round(f * width);
  const eta = p.etaMs !== undefined ? `, ${(p.etaMs / 1000).toFixed(0)} s left` : "";
  const shard = p.count > 1 ? ` [${p.index + 1}/${p.count}]` : "";
  line.update(
    f,
    `${p.file}${shard} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${mib(p.receivedBytes)}/${mib(p.totalBytes)} ${mib(p.bytesPerSecond)}/s${eta}`,
  );
}

export async function pull(args: string[]): Promise<void> {
  const ref = args.find((a) => !a.startsWith("-"));
  if (!ref) throw new GenaiError("INVALID_ARGUMENT", "pull needs a REF (hf:owner/repo[:quant], hf:owner/repo/file.gguf or https://…)");
  if (args.includes("--inspect")) {
    // what would be downloaded, the model's metadata and whether it fits, without downloading
    const i = await new ModelStore().inspect(ref);
    const s = i.summary;
    process.stdout.write(
      `${i.ref}: ${s.architecture}, ${(s.parameterCount / 1e9).toFixed(2)} B parameters, context ${s.contextLength ?? "?"}, ` +
        `${i.files.length} file(s), ${mib(i.bytes)}; needs about ${mib(i.estimate.total)} for ${i.contextSize} tokens — ${i.fits ? "fits" : "does NOT fit"} this machine\n`,
    );
    return;
  }
  const ac = new AbortController();
  process.once("SIGINT", () => ac.abort());
  // a line per file (a sharded model, its projector)
  const lines: ProgressLine[] = [];
  const m = await new ModelStore().pull(ref, {
    signal: ac.signal,
    onProgress: (p) => {
      if (!lines[p.index]) {
        lines[p.index - 1]?.end();
        lines[p.index] = new ProgressLine();
      }
      bar(lines[p.index], p);
    },
  });
  lines.at(-1)?.end();
  process.stdout.write(`${m.ref} ${m.path} (${mib(m.bytes)}${m.files.length > 1 ? `, ${m.files.length} files` : ""})\n`);
}

export function ls(args: string[]): void {
  const store = new ModelStore();
  const models = store.list();
  if (args.includes("--json")) {
    process.stdout.write(JSON.stringify({ dir: store.dir, models }, null, 1) + "\n");
    return;
  }
  for (const m of models) {
    const about = m.architecture ? `${m.architecture} ${((m.parameterCount ?? 0) / 1e9).toFixed(2)}B` : "";
    process.stdout.write(`${m.ref}\t${mib(m.bytes)}\t${about}\t${m.path}\n`);
  }
  if (models.length === 0) process.stderr.write(`no models in ${store.dir}\n`);
}

export function rm(args: string[]): void {
  const ref = args.find((a) => !a.startsWith("-"));
  if (!ref) throw new GenaiError("INVALID_ARGUMENT", "rm needs a REF");
  if (!new ModelStore().remove(ref)) throw new GenaiError("MODEL_NOT_FOUND", `${ref} is not in the store`);
  process.stdout.write(`removed ${ref}\n`);
}
