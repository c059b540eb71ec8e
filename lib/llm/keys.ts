/** The accepted keys of each LLM options object (unknown keys are INVALID_ARGUMENT); the compiler checks each list is complete. */
import { optionKeys } from "../util/validate";
import type {
  ChatOptions,
  ChatTemplateOptions,
  CompleteOptions,
  ContextOptions,
  DetokenizeOptions,
  EmbedOptions,
  GenerateOptions,
  LoadModelOptions,
  TokenizeOptions,
} from "./types";

export const LOAD_KEYS = optionKeys<LoadModelOptions>()(
  "gpuLayers",
  "useMmap",
  "vocabOnly",
  "device",
  "mmproj",
  "projectorThreads",
  "rpcServers",
  "rpcTimeouts",
  "tensorSplit",
  "onProgress",
  "signal",
);
export const TOKENIZE_KEYS = optionKeys<TokenizeOptions>()("addSpecial", "parseSpecial");
export const DETOKENIZE_KEYS = optionKeys<DetokenizeOptions>()("removeSpecial", "unparseSpecial");
export const CHAT_TEMPLATE_KEYS = optionKeys<ChatTemplateOptions>()(
  "template",
  "addAssistant",
  "tools",
  "toolChoice",
  "parallelToolCalls",
  "enableThinking",
  "signal",
);
export const CONTEXT_KEYS = optionKeys<ContextOptions>()(
  "contextSize",
  "batchSize",
  "threads",
  "batchThreads",
  "seed",
  "flashAttention",
  "embeddings",
  "sequences",
);
export const GENERATE_KEYS = optionKeys<GenerateOptions>()(
  "maxTokens",
  "temperature",
  "topK",
  "topP",
  "minP",
  "repeatPenalty",
  "presencePenalty",
  "frequencyPenalty",
  "penaltyLastN",
  "seed",
  "stop",
  "ignoreEos",
  "grammar",
  "jsonSchema",
  "logitBias",
  "logprobs",
  "contextOverflow",
  "keepTokens",
  "signal",
);
export const COMPLETE_KEYS = optionKeys<CompleteOptions>()(...(GENERATE_KEYS as (keyof GenerateOptions)[]), "onText");
export const CHAT_KEYS = optionKeys<ChatOptions>()(
  ...(GENERATE_KEYS as (keyof GenerateOptions)[]),
  "template",
  "responseFormat",
  "tools",
  "toolChoice",
  "parallelToolCalls",
  "reasoningBudget",
);
export const EMBED_KEYS = optionKeys<EmbedOptions>()("normalize");
