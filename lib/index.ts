/**
 * genai-native: llama.cpp in the Node/Electron process.
 * See README.md for an overview; every export is documented at its source.
 */
export { GenaiError, isGenaiError, type GenaiErrorCode } from "./errors";
export { LlamaModel, type LoadModelOptions, type ModelMetadata, type ChatMessage, type TokenizeOptions } from "./llm/model";
export { LlamaContext, type SavedContextState, type ContextOptions, type GenerateOptions, type ChatOptions, type CompletionResult, type CompletionTimings } from "./llm/context";
export { TextStream } from "./llm/text-stream";
export { systemInfo, versions, capabilities, setLogLevel, initBackends, backendStatus, deviceFor, GPU_BACKENDS, type LogLevel, type Device, type SystemInfo, type SystemInfoWithBackends, type Versions, type BackendModuleStatus, type BackendState, type InitBackendsOptions } from "./system/index";
export { readGgufSummary, type GgufSummary } from "./models/metadata";
export { resolveModel, downloadModel, modelCacheDir, DEFAULT_MODEL, type KnownModel, type ResolveOptions } from "./models/resolver";
export { Orchestrator, ManagedLlama, ManagedDiffusion, JobQueue, JobRegistry, PRIORITIES, estimateLlamaFromMetadata, measureLlamaMemory, kvCacheBytes, fitLlamaParams } from "./orchestrator/index";
export type { OrchestratorOptions, SubmitOptions, OffloadEvent, RestoreEvent, ReserveEvent, LedgerDevice, ManagedLlamaOptions, ManagedDiffusionOptions, ManagedResource, Holding, HoldingKind, Residency, LlamaMemoryEstimate, Priority, QueuedJob, FitOptions, FitResult } from "./orchestrator/index";
export type { DeviceMemory } from "./native";
export { DiffusionModel, ImageJob, Upscaler, encodePng, nativeDiffusionEngine } from "./diffusion/index";
export type { ImageGenerateOptions, GeneratedImage, ImageJobStatus, ImageProgress, ImageStage, DiffusionEngine, DiffusionLoadOptions, EngineModel, EngineEvent, EngineGenerateParams, EngineCancelToken, RawImage, LoraSpec, UpscalerLoadOptions, UpscaleOptions, UpscaledImage } from "./diffusion/index";
