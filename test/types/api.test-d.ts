// Type tests of the public API (vitest typecheck: tsc checks this file; a
// wrong type or a `@ts-expect-error` that no longer errors fails the run).
import { describe, expectTypeOf, it } from "vitest";
import type * as Api from "../../lib/index";
import {
  CONTEXT_DEFAULTS,
  type DiffusionModel,
  type ERROR_CODES,
  GenaiError,
  IMAGE_DEFAULTS,
  type LlamaContext,
  LlamaModel,
  MAX_SEED,
  type Orchestrator,
  SAMPLING_DEFAULTS,
  type TextStream,
  type Upscaler,
  isGenaiError,
} from "../../lib/index";

describe("errors", () => {
  it("codes are one closed union", () => {
    expectTypeOf<Api.GenaiErrorCode>().toEqualTypeOf<(typeof ERROR_CODES)[number]>();
    expectTypeOf<"BUSY">().toMatchTypeOf<Api.GenaiErrorCode>();
    // @ts-expect-error not a code
    const bad: Api.GenaiErrorCode = "NOPE";
    void bad;
    expectTypeOf(new GenaiError("BUSY", "x").code).toEqualTypeOf<Api.GenaiErrorCode>();
    expectTypeOf(isGenaiError).guards.toEqualTypeOf<GenaiError>();
  });
});

describe("LLM", () => {
  it("load, context, generation", () => {
    expectTypeOf(LlamaModel.load).parameters.toEqualTypeOf<[path: string, options?: Api.LoadModelOptions]>();
    expectTypeOf(LlamaModel.load).returns.resolves.toEqualTypeOf<LlamaModel>();
    expectTypeOf<LlamaModel["createContext"]>().parameters.toEqualTypeOf<[options?: Api.ContextOptions]>();
    expectTypeOf<LlamaModel["createContext"]>().returns.resolves.toEqualTypeOf<LlamaContext>();
    expectTypeOf<LlamaContext["generate"]>().returns.toEqualTypeOf<TextStream<Api.CompletionResult>>();
    expectTypeOf<LlamaContext["chat"]>().parameters.toEqualTypeOf<[messages: readonly Api.ChatMessage[], options?: Api.ChatOptions]>();
    expectTypeOf<LlamaContext["embed"]>().returns.resolves.toEqualTypeOf<Float32Array>();
    expectTypeOf<LlamaContext["saveState"]>().returns.resolves.toEqualTypeOf<Api.SavedContextState>();
    expectTypeOf<LlamaContext["info"]>().toEqualTypeOf<Api.ContextInfo>();
    expectTypeOf<LlamaContext["memory"]>().returns.toEqualTypeOf<Api.DeviceMemory[]>();
    expectTypeOf<Api.CompletionResult["stopReason"]>().toEqualTypeOf<"eos" | "maxTokens" | "stop" | "aborted" | "contextFull">();
    expectTypeOf<TextStream<Api.CompletionResult>>().toMatchTypeOf<AsyncIterable<string>>();
    expectTypeOf<LlamaModel>().toMatchTypeOf<AsyncDisposable>();
  });

  it("options are typed, and misspelled keys are compile errors", () => {
    const ok: Api.GenerateOptions = { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05, seed: 1, stop: ["\n"], maxTokens: 8, signal: AbortSignal.timeout(1) };
    void ok;
    // @ts-expect-error misspelled option
    const typo: Api.GenerateOptions = { temprature: 0.7 };
    void typo;
    // @ts-expect-error flashAttention takes "auto" | "on" | "off" | boolean
    const fa: Api.ContextOptions = { flashAttention: "maybe" };
    void fa;
  });

  it("defaults are read-only objects of the option types", () => {
    expectTypeOf(SAMPLING_DEFAULTS.temperature).toEqualTypeOf<number>();
    expectTypeOf(CONTEXT_DEFAULTS.batchSize).toEqualTypeOf<number>();
    expectTypeOf(MAX_SEED).toEqualTypeOf<number>();
    // @ts-expect-error frozen
    SAMPLING_DEFAULTS.temperature = 1;
  });
});

describe("images and orchestration", () => {
  it("image jobs", () => {
    expectTypeOf<DiffusionModel["generate"]>().parameters.toEqualTypeOf<[options: Api.ImageGenerateOptions]>();
    expectTypeOf<DiffusionModel["generate"]>().returns.toEqualTypeOf<Api.ImageJob>();
    expectTypeOf<Api.ImageJob["done"]>().resolves.toEqualTypeOf<Api.GeneratedImage[]>();
    expectTypeOf<Api.ImageProgress["stage"]>().toEqualTypeOf<Api.ImageStage>();
    expectTypeOf<Upscaler["upscale"]>().returns.resolves.toEqualTypeOf<Api.UpscaledImage>();
    expectTypeOf(IMAGE_DEFAULTS.steps).toEqualTypeOf<number>();
  });

  it("orchestrator", () => {
    expectTypeOf<Orchestrator["submit"]>().returns.toMatchTypeOf<Api.QueuedJob<unknown>>();
    expectTypeOf<Api.Priority>().toEqualTypeOf<"immediate" | "interactive" | "preload" | "background">();
  });

  it("the binding contract is not public", () => {
    // @ts-expect-error internal: lib/binding/types.ts is never re-exported
    expectTypeOf<Api.ModelHandle>().not.toBeAny();
  });
});
