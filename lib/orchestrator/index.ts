export {
  Orchestrator,
  type OrchestratorOptions,
  type SubmitOptions,
  type OffloadEvent,
  type RestoreEvent,
  type ReserveEvent,
  type LedgerDevice,
  type JobControl,
  type WaitEvent,
  type YieldEvent,
} from "./orchestrator";
export { runImageBatch, submitImageBatch, type ImageBatchHooks, type SubmitImageBatchOptions } from "./image-batch";
export { ManagedLlama, type ManagedLlamaOptions, type ManagedLlamaTimings } from "./managed-llama";
export type { ManagedResource, Holding, HoldingKind, Residency } from "./resource";
export { estimateLlamaFromMetadata, measureLlamaMemory, kvCacheBytes, type LlamaMemoryEstimate } from "./estimate";
export { JobQueue, PRIORITIES, type Priority, type QueuedJob, type RunControl } from "./queue";
export { JobRegistry } from "./registry";
export { fitLlamaParams, type FitOptions, type FitResult } from "./fit";
export { ManagedDiffusion, type ManagedDiffusionOptions } from "./managed-diffusion";
