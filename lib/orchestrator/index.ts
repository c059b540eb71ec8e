export {
  Orchestrator,
  type OrchestratorOptions,
  type SubmitOptions,
  type OffloadEvent,
  type RestoreEvent,
  type ReserveEvent,
  type LedgerDevice,
} from "./orchestrator";
export { ManagedLlama, type ManagedLlamaOptions, type ManagedLlamaTimings } from "./managed-llama";
export type { ManagedResource, Holding, HoldingKind, Residency } from "./resource";
export { estimateLlamaFromMetadata, measureLlamaMemory, kvCacheBytes, type LlamaMemoryEstimate } from "./estimate";
export { JobQueue, PRIORITIES, type Priority, type QueuedJob } from "./queue";
export { JobRegistry } from "./registry";
export { fitLlamaParams, type FitOptions, type FitResult } from "./fit";
export { ManagedDiffusion, type ManagedDiffusionOptions } from "./managed-diffusion";
