export { DiffusionModel, ImageJob, resolveGenerateParams, MIN_SIDE, MAX_SIDE, type ImageGenerateOptions, type GeneratedImage, type ImageJobStatus } from "./model";
export { ProgressTracker, type ImageProgress, type ImageStage } from "./progress";
export { encodePng } from "./png";
export { nativeDiffusionEngine, ENGINE_HOWTO } from "./native-engine";
export type { DiffusionEngine, DiffusionLoadOptions, EngineModel, EngineEvent, EngineGenerateParams, EngineCancelToken, RawImage, LoraSpec } from "./engine";
export { Upscaler, MAX_UPSCALED_SIDE, type UpscalerLoadOptions, type UpscaleOptions, type UpscaledImage } from "./upscaler";
