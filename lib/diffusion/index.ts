export { DiffusionModel } from "./model";
export { ImageJob } from "./job";
export { resolveGenerateParams } from "./params";
export {
  IMAGE_DEFAULTS,
  DIFFUSION_LOAD_DEFAULTS,
  UPSCALER_DEFAULTS,
  MIN_SIDE,
  MAX_SIDE,
  MAX_UPSCALED_SIDE,
  MAX_PROMPT_CHARS,
  SIDE_MULTIPLE,
  MAX_REF_IMAGES,
  MAX_REF_ASPECT,
  MAX_FLOW_SHIFT,
  MAX_PHOTO_MAKER_IMAGES,
  MAX_IP_ADAPTER_STRENGTH,
  PHOTO_MAKER_TRIGGER,
} from "./defaults";
export { ProgressTracker } from "./progress";
export { encodePng } from "./png";
export { nativeDiffusionEngine, ENGINE_HOWTO } from "./native-engine";
export { Upscaler } from "./upscaler";
export {
  DEFAULT_PROMPT_TOKENS,
  DIT_COMPUTE_FIT,
  ditComputeBytes,
  ditShape,
  ditTokens,
  refImagePixels,
  estimateDiffusionMemory,
  promptTokenBound,
  estimateFromFiles,
  readDiffusionFiles,
  SD1_COMPUTE_FIT,
  SDXL_COMPUTE_FIT,
  TAESD_COMPUTE_FIT,
  unetComputeBytes,
  unetShape,
} from "./memory";
export type {
  DiffusionFamily,
  DiffusionMemoryEstimate,
  DiffusionImageSize,
  DiffusionParts,
  DiffusionFilesInfo,
  DitFamily,
  DitFit,
  DitShape,
  UnetComputeFit,
  UnetFamily,
  UnetFit,
  UnetShape,
} from "./memory";
export { readTensorInfos, type TensorInfo } from "./tensors";
export type { DiffusionEngine, EngineModel, EngineEvent, EngineGenerateParams, EngineCancelToken } from "./engine";
export type * from "./types";
