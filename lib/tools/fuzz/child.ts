/**
 * The fuzzer's case runner, in a child process (forked by ./run.ts with an
 * IPC channel): for each `{ id, path }` it receives it loads the model,
 * creates a context, generates a few greedy tokens and disposes, then loads
 * the same file vocabulary-only, tokenizes, detokenizes and applies a chat
 * template, and replies with
 * what happened. A crash or a hang ends or stalls this process; the parent
 * sees that and blames the case in flight.
 */
import { GenaiError } from "../../errors";
import { LlamaModel } from "../../llm/model";

export interface CaseRequest {
  id: number;
  path: string;
}

export type StepOutcome = { outcome: "ok"; tokens?: number } | { outcome: "error"; code: string; message: string; typed: boolean; stage: string };

export interface CaseReply {
  id: number;
  full: StepOutcome;
  vocabOnly: StepOutcome;
}

function failure(e: unknown, stage: string): StepOutcome {
  const typed = e instanceof GenaiError;
  return { outcome: "error", code: typed ? e.code : "UNTYPED", message: String((e as Error)?.message ?? e).slice(0, 1000), typed, stage };
}

export async function runCase(path: string): Promise<CaseReply["full" | "vocabOnly"][]> {
  const full = await (async (): Promise<StepOutcome> => {
    let stage = "load";
    let model: LlamaModel | undefined;
    try {
      model = await LlamaModel.load(path, { device: "cpu" });
      stage = "context";
      const ctx = await model.createContext({ contextSize: 64, batchSize: 32, threads: 1 });
      stage = "generate";
      const r = await ctx.generate("Once upon a time", { maxTokens: 4, temperature: 0 }).result;
      stage = "dispose";
      await model.dispose();
      return { outcome: "ok", tokens: r.tokenCount };
    } catch (e) {
      await model?.dispose().catch(() => {});
      return failure(e, stage);
    }
  })();
  const vocabOnly = await (async (): Promise<StepOutcome> => {
    let stage = "load";
    let model: LlamaModel | undefined;
    try {
      model = await LlamaModel.load(path, { device: "cpu", vocabOnly: true });
      stage = "tokenize";
      const t = await model.tokenize("Hello\nworld <s> \u00e9\u4e16", { parseSpecial: true });
      stage = "detokenize";
      await model.detokenize(t);
      stage = "chatTemplate";
      await model.applyChatTemplate([{ role: "user", content: "hi" }], {
        template: "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}",
      });
      stage = "dispose";
      await model.dispose();
      return { outcome: "ok", tokens: t.length };
    } catch (e) {
      await model?.dispose().catch(() => {});
      return failure(e, stage);
    }
  })();
  return [full, vocabOnly];
}

if (require.main === module && process.send) {
  process.on("message", (m: CaseRequest) => {
    void runCase(m.path).then(([full, vocabOnly]) => process.send?.({ id: m.id, full, vocabOnly } satisfies CaseReply));
  });
  process.on("disconnect", () => process.exit(0));
  process.send({ ready: true });
}
