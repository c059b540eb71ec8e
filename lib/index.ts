/**
 * genai-native: llama.cpp and stable-diffusion.cpp in the Node/Electron process.
 * See README.md for an overview; every export is documented at its source.
 */
export { GenaiError, isGenaiError, ERROR_CODES, type GenaiErrorCode } from "./errors";

// text: models, contexts, streaming
export { LlamaModel } from "./llm/model";
export { LlamaContext, LlamaSequence } from "./llm/context";
export { LoraAdapter } from "./llm/lora";
export { TextStream } from "./llm/text-stream";
export { SAMPLING_DEFAULTS, CONTEXT_DEFAULTS, LOAD_DEFAULTS, MAX_SEED } from "./llm/defaults";
export type * from "./llm/types";
export { MEDIA_MARKER, type ChatImage, type ChatContentPart } from "./llm/media";

// the machine: devices, backends, logs
export {
  systemInfo,
  versions,
  capabilities,
  setLogLevel,
  setLogger,
  initBackends,
  backendStatus,
  deviceFor,
  GPU_BACKENDS,
  connectRpcServers,
  rpcDevices,
  refreshRpcDevices,
  DEFAULT_RPC_PORT,
} from "./system/index";
export type {
  RpcDevice,
  RpcTimeouts,
  LogLevel,
  LogSource,
  Logger,
  Device,
  SystemInfo,
  SystemInfoWithBackends,
  Versions,
  BackendModuleStatus,
  BackendState,
  InitBackendsOptions,
} from "./system/index";

// model files
export { readGgufSummary, type GgufSummary } from "./models/metadata";
export { resolveModel, downloadModel, modelCacheDir, DEFAULT_MODEL, type KnownModel, type ResolveOptions } from "./models/resolver";
export { ModelStore, type PullOptions, type StoredModel } from "./models/store";
export { parseModelRef, pickModelFiles, quantOf, DEFAULT_QUANTS, type ModelRef, type HubFile } from "./models/hub";
export { downloadFile, type DownloadFileOptions, type DownloadProgress } from "./models/download";

// memory orchestration
export { Orchestrator, ManagedLlama, ManagedDiffusion, JobQueue, JobRegistry, PRIORITIES, runImageBatch, submitImageBatch } from "./orchestrator/index";
export { estimateLlamaFromMetadata, measureLlamaMemory, kvCacheBytes, fitLlamaParams } from "./orchestrator/index";
export { DIT_COMPUTE_FIT, estimateDiffusionMemory, SD1_COMPUTE_FIT, SDXL_COMPUTE_FIT } from "./diffusion/memory";
export type { DiffusionFamily, DiffusionMemoryEstimate, DiffusionImageSize, DiffusionParts } from "./diffusion/memory";
export type { OrchestratorOptions, SubmitOptions, OffloadEvent, RestoreEvent, ReserveEvent, LedgerDevice } from "./orchestrator/index";
export type { JobControl, WaitEvent, YieldEvent, ImageBatchHooks, SubmitImageBatchOptions } from "./orchestrator/index";
export type { ManagedLlamaOptions, ManagedLlamaTimings, ManagedDiffusionOptions, ManagedResource, Holding, HoldingKind, Residency } from "./orchestrator/index";
export type { LlamaMemoryEstimate, Priority, QueuedJob, FitOptions, FitResult } from "./orchestrator/index";

// images
export { DiffusionModel, ImageJob, Upscaler, encodePng, nativeDiffusionEngine } from "./diffusion/index";
export { IMAGE_DEFAULTS, DIFFUSION_LOAD_DEFAULTS, UPSCALER_DEFAULTS } from "./diffusion/index";
export type { DiffusionEngine, EngineModel, EngineEvent, EngineGenerateParams, EngineCancelToken } from "./diffusion/index";
export type { ImageGenerateOptions, GeneratedImage, ImageJobStatus, ImageProgress, ImageStage, DiffusionLoadOptions } from "./diffusion/index";
export type { RawImage, LoraSpec, UpscalerLoadOptions, UpscaleOptions, UpscaledImage } from "./diffusion/index";
