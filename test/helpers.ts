import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveModel } from "../lib/models/resolver";

/** stories260K through the project's resolver (no downloads in tests). */
export function storiesPath(): Promise<string> {
  return resolveModel(undefined, { download: false });
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = "genai-native-test-"): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Cores for inference in tests: leave one to the event loop. */
export const THREADS = Math.max(1, (os.availableParallelism?.() ?? os.cpus().length) - 1);
