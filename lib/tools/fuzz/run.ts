/**
 * The GGUF fuzz driver: writes each mutated case to a temporary file and has
 * a child process (./child.ts) run it — load → context → a few greedy
 * tokens → dispose, then a vocabulary-only load with tokenize/detokenize —
 * with a timeout per case. A child that dies (signal or exit) is a crash of
 * the case in flight, one past the timeout is a hang (killed); both are
 * re-run alone in a fresh child to confirm, and a new child takes over.
 * Children are reused between cases (the addon loads once), `jobs` of them
 * in parallel. Deterministic: case i of seed S is always the same file.
 *
 *   const report = await runGgufFuzz({ model: "stories260K.gguf", count: 200, seed: 1 });
 *   // report.results: { ok, errors: { INVALID_MODEL: 150, … }, crashes: { SIGABRT: 0 }, hangs: 0, untyped: 0 }
 */
import { fork, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { CaseReply, StepOutcome } from "./child";
import { parseGguf } from "./gguf-doc";
import { caseSeed, mutateGguf } from "./mutate";

export interface FuzzOptions {
  /** The seed model (a well-formed GGUF). */
  model: string;
  count: number;
  seed: number;
  /** First case index (default 0): `--start 5000 --count 10` re-runs cases 5000..5009. */
  start?: number;
  /** Per-case time limit, ms (default 30 000). */
  timeoutMs?: number;
  /** Parallel children (default 1). */
  jobs?: number;
  /** The compiled child script (default: child.js beside this module). */
  childScript?: string;
  /** Called after each case. */
  onCase?: (r: CaseResult) => void;
  /** Environment of the children (default: process.env with GENAI_NATIVE_BACKENDS=cpu). */
  env?: NodeJS.ProcessEnv;
}

export interface CaseResult {
  index: number;
  seed: number;
  mutations: string[];
  kind: "ok" | "error" | "crash" | "hang";
  full?: StepOutcome;
  vocabOnly?: StepOutcome;
  /** crash: the signal (or "exit <code>"). */
  signal?: string;
  /** crash/hang: whether a fresh child running only this case failed the same way. */
  confirmed?: boolean;
  /** crash/hang: the end of the child's stderr. */
  stderr?: string;
}

export interface FuzzReport {
  model: string;
  count: number;
  seed: number;
  start: number;
  elapsedMs: number;
  results: {
    /** Loaded, generated and disposed. */
    ok: number;
    /** Typed errors (GenaiError) by code, of the full pipeline. */
    errors: Record<string, number>;
    /** Errors that were not GenaiError. */
    untyped: number;
    crashes: Record<string, number>;
    hangs: number;
  };
  /** The vocabulary-only load of the same cases. */
  vocabOnly: { ok: number; errors: Record<string, number>; untyped: number };
  /** Stage at which typed errors were raised (load, context, generate, …). */
  errorStages: Record<string, number>;
  crashes: CaseResult[];
  hangs: CaseResult[];
  untypedErrors: CaseResult[];
}

/** The bytes and description of case `index` of a run with `seed`. */
export function fuzzCase(modelBytes: Buffer, seed: number, index: number): { seed: number; bytes: Buffer; mutations: string[] } {
  return mutateGguf(parseGguf(modelBytes), caseSeed(seed, index));
}

class Runner {
  child: ChildProcess | undefined;
  stderr = "";
  private ready: Promise<void> | undefined;
  private pending: { id: number; resolve: (r: { reply?: CaseReply; signal?: string; hang?: boolean }) => void; timer: NodeJS.Timeout } | undefined;

  constructor(
    private script: string,
    private env: NodeJS.ProcessEnv,
    private timeoutMs: number,
  ) {}

  private spawn(): Promise<void> {
    const child = fork(this.script, [], { env: this.env, stdio: ["ignore", "ignore", "pipe", "ipc"], serialization: "advanced" });
    this.child = child;
    this.stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString("utf8")).slice(-4000);
    });
    const ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: unknown) => {
        if ((m as { ready?: boolean })?.ready) {
          child.off("message", onMsg);
          resolve();
        }
      };
      child.on("message", onMsg);
      child.once("exit", (code, sig) => reject(new Error(`fuzz child exited before it was ready (${sig ?? code}): ${this.stderr}`)));
    });
    child.on("message", (m: unknown) => {
      const r = m as CaseReply;
      if (this.pending && typeof r?.id === "number" && r.id === this.pending.id) {
        const p = this.pending;
        this.pending = undefined;
        clearTimeout(p.timer);
        p.resolve({ reply: r });
      }
    });
    child.on("exit", (code, sig) => {
      if (this.child === child) {
        this.child = undefined;
        this.ready = undefined;
      }
      if (this.pending) {
        const p = this.pending;
        this.pending = undefined;
        clearTimeout(p.timer);
        // let the last stderr bytes arrive
        setTimeout(() => p.resolve({ signal: sig ?? `exit ${code}` }), 50);
      }
    });
    return ready;
  }

  async run(id: number, file: string): Promise<{ reply?: CaseReply; signal?: string; hang?: boolean }> {
    // a child that cannot start (dist/ being rebuilt under a long run): retry for a minute
    for (let attempt = 0; ; attempt++) {
      if (!this.child || !this.ready) this.ready = this.spawn();
      try {
        await this.ready;
        break;
      } catch (e) {
        this.close();
        if (attempt >= 12) throw e;
        await new Promise((r) => setTimeout(r, 5000));
      }
    }
    const child = this.child as ChildProcess;
    this.stderr = "";
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.pending?.id !== id) return;
        this.pending = undefined;
        child.kill("SIGKILL");
        resolve({ hang: true });
      }, this.timeoutMs);
      this.pending = { id, resolve, timer };
      child.send({ id, path: file });
    });
  }

  close(): void {
    this.child?.kill("SIGKILL");
    this.child = undefined;
    this.ready = undefined;
  }
}

function defaultChildScript(): string {
  const beside = path.join(__dirname, "child.js");
  if (fs.existsSync(beside)) return beside;
  // running from TypeScript sources (tests): the compiled child in dist/
  return path.resolve(__dirname, "..", "..", "..", "dist", "cjs", "tools", "fuzz", "child.js");
}

/** Runs `count` cases from `start` and returns the counts and every crash, hang and untyped error. */
export async function runGgufFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const start = options.start ?? 0;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const jobs = Math.max(1, options.jobs ?? 1);
  const script = options.childScript ?? defaultChildScript();
  const env = options.env ?? { ...process.env, GENAI_NATIVE_BACKENDS: process.env.GENAI_NATIVE_BACKENDS ?? "cpu", GENAI_NATIVE_PROBE: "0" };
  const base = parseGguf(fs.readFileSync(options.model));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-fuzz-"));
  const report: FuzzReport = {
    model: path.basename(options.model),
    count: options.count,
    seed: options.seed,
    start,
    elapsedMs: 0,
    results: { ok: 0, errors: {}, untyped: 0, crashes: {}, hangs: 0 },
    vocabOnly: { ok: 0, errors: {}, untyped: 0 },
    errorStages: {},
    crashes: [],
    hangs: [],
    untypedErrors: [],
  };
  const inc = (o: Record<string, number>, k: string) => {
    o[k] = (o[k] ?? 0) + 1;
  };
  let next = start;
  const end = start + options.count;
  const worker = async (w: number) => {
    const runner = new Runner(script, env, timeoutMs);
    try {
      while (next < end) {
        const index = next++;
        const c = mutateGguf(base, caseSeed(options.seed, index));
        const file = path.join(dir, `case-${index}.gguf`);
        fs.writeFileSync(file, c.bytes);
        const result: CaseResult = { index, seed: c.seed, mutations: c.mutations, kind: "ok" };
        let r = await runner.run(index, file);
        if (!r.reply) {
          result.kind = r.hang ? "hang" : "crash";
          result.signal = r.signal;
          result.stderr = runner.stderr.slice(-1500);
          // confirm alone, in a fresh child
          runner.close();
          const alone = new Runner(script, env, timeoutMs);
          r = await alone.run(index, file);
          alone.close();
          result.confirmed = !r.reply && Boolean(r.hang) === (result.kind === "hang");
          if (r.reply && !result.confirmed) result.stderr += `\n[not reproduced alone: ${JSON.stringify(r.reply.full)}]`;
        } else {
          result.full = r.reply.full;
          result.vocabOnly = r.reply.vocabOnly;
          result.kind = result.full.outcome === "ok" ? "ok" : "error";
        }
        fs.rmSync(file, { force: true });
        if (result.kind === "crash") {
          inc(report.results.crashes, result.signal ?? "?");
          report.crashes.push(result);
        } else if (result.kind === "hang") {
          report.results.hangs++;
          report.hangs.push(result);
        } else {
          const f = result.full as StepOutcome;
          if (f.outcome === "ok") report.results.ok++;
          else if (!f.typed) {
            report.results.untyped++;
            report.untypedErrors.push(result);
          } else {
            inc(report.results.errors, f.code);
            inc(report.errorStages, f.stage);
          }
          const v = result.vocabOnly as StepOutcome;
          if (v.outcome === "ok") report.vocabOnly.ok++;
          else if (!v.typed) {
            report.vocabOnly.untyped++;
            if (f.outcome === "ok" || f.typed) report.untypedErrors.push(result);
          } else inc(report.vocabOnly.errors, v.code);
        }
        options.onCase?.(result);
      }
    } finally {
      runner.close();
    }
    void w;
  };
  try {
    await Promise.all(Array.from({ length: jobs }, (_, w) => worker(w)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  report.elapsedMs = Date.now() - t0;
  return report;
}
