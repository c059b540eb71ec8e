/**
 * `genai-native/tools`: development tools kept out of the main entry point.
 *
 * Random-weight model generators (llama-architecture LLMs, LoRA adapters,
 * LLaVA-style multimodal projectors, Stable Diffusion 1.x checkpoints, Z-Image
 * (DiT, Qwen3 text encoder and Flux VAE files), ESRGAN
 * upscalers) so tests and benchmarks run real inference without downloads,
 * and the streaming GGUF v3 writer they use.
 * Nothing under lib/ outside lib/tools imports this module, so
 * `require("genai-native")` never loads it.
 *
 * CLIs (after the TypeScript build): dist/cjs/tools/gen-model.js,
 * gen-sd-model.js and gen-esrgan-model.js (`npm run gen:model` runs the first).
 */

// GGUF writer
export {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgmlType,
  GgufDataSink,
  GgufValueType,
  GgufWriter,
  alignUp,
  ggmlTypeTraits,
  tensorByteSize,
  type GgmlTypeTraits,
  type GgufLayout,
  type GgufTensorEntry,
  type GgufValue,
  type GgufWriterOptions,
} from "./gguf/writer";

// Deterministic random data
export { f32ToF16Bits, mulberry32, tensorSeed } from "./random";

// llama-architecture LLMs
export {
  CHATML_TEMPLATE,
  PRESETS,
  llamaParameterCount,
  llamaTensorPlan,
  validateShape,
  type LlamaShape,
  type LlamaTensorSpec,
  type PresetName,
  type WeightType,
} from "./llama/shape";
export { TOKEN_TYPE, syntheticSpmVocab, type SyntheticVocab } from "./llama/vocab";
export { generateRandomLlamaModel, randomLlamaModelLayout, type GenerateOptions, type GenerateResult } from "./llama/generate";
export { generateRandomLora, type LoraOptions } from "./llama/lora";
export { generateRandomMmproj, type MmprojOptions, type MmprojResult } from "./llama/mmproj";
export { runCli as runGenModelCli } from "./gen-model";

// GGUF fuzzing: a structure-aware mutator and a crash-isolating runner (npm run fuzz:gguf)
export { parseGguf, serializeGguf, relayout, cloneDoc, type GgufDoc, type RawKv, type RawTensor, type RawValue, type HeaderField } from "./fuzz/gguf-doc";
export { caseSeed, mutateGguf, type MutatedGguf } from "./fuzz/mutate";
export { fuzzCase, runGgufFuzz, type CaseResult, type FuzzOptions, type FuzzReport } from "./fuzz/run";

// Stable Diffusion 1.x
export {
  SD1_FIXED,
  SD_PRESETS,
  validateSdShape,
  type Sd1Shape,
  type SdInit,
  type SdPresetName,
  type SdTensorSpec,
  type SdWeightType,
} from "./sd/shape";
export { sd1TensorPlan, sdParameterCount } from "./sd/plan";
export { generateRandomSd15Model, randomSd15ModelBytes, type GenerateSdOptions, type GenerateSdResult } from "./sd/generate";
export { generateRandomSdLora, sdLoraTensors, writeRandomDitLora, type DitLoraOptions, type SdLoraOptions, type SdLoraTarget } from "./sd/lora";
export { runCli as runGenSdModelCli } from "./gen-sd-model";

// ESRGAN upscalers
export { ESRGAN_FEATURES, ESRGAN_GROWTH, esrganConvs, generateRandomEsrganModel, type GenerateEsrganOptions } from "./gen-esrgan-model";
// Z-Image (DiT + Qwen3 text encoder + Flux VAE, three files)
export {
  Z_IMAGE_TINY,
  generateRandomZImageModel,
  zImageDitPlan,
  zImageTextEncoderPlan,
  zImageVaePlan,
  type GenerateZImageOptions,
  type GenerateZImageResult,
  type ZImageInit,
  type ZImagePart,
  type ZImageSizes,
  type ZImageTensorSpec,
} from "./sd/z-image";
// Flux 2 [klein] (DiT + Qwen3 text encoder + Flux 2 VAE, three files; a LoRA for its DiT)
export {
  FLUX2_KLEIN_TE_LAYERS,
  FLUX2_KLEIN_TINY,
  flux2ContextWidth,
  flux2DitPlan,
  flux2LoraTargets,
  flux2TextEncoderPlan,
  flux2VaePlan,
  generateRandomFlux2KleinModel,
  generateRandomFlux2Lora,
  type Flux2Sizes,
  type GenerateFlux2Options,
  type GenerateFlux2Result,
} from "./sd/flux2";
// Flux 1 [dev] / [schnell] (DiT + CLIP-L + T5 + Flux VAE, four files; a LoRA for its DiT)
export {
  FLUX1_TINY,
  flux1DitPlan,
  flux1LoraTargets,
  flux1T5Plan,
  flux1VaePlan,
  generateRandomFlux1Lora,
  generateRandomFlux1Model,
  type Flux1Sizes,
  type GenerateFlux1Options,
  type GenerateFlux1Result,
} from "./sd/flux1";
// Stable Diffusion 3 / 3.5 (MMDiT + CLIP-L + bigG + T5 + 16-channel VAE, five files; a LoRA for its MMDiT)
export {
  SD3_TINY,
  generateRandomSd3Lora,
  generateRandomSd3Model,
  sd3ClipGPlan,
  sd3LoraTargets,
  sd3MmditPlan,
  type GenerateSd3Options,
  type GenerateSd3Result,
  type Sd3Sizes,
} from "./sd/sd3";
export type { GeneratedPart, PartInit, PartTensorSpec } from "./sd/parts-writer";
// Qwen-Image (DiT + Qwen2.5-VL text encoder + Wan VAE, three files, q4_0 by default)
export {
  QWEN_IMAGE_TINY,
  generateRandomQwenImageModel,
  generateRandomQwenImageVision,
  qwenImageDitPlan,
  qwenImageTextEncoderPlan,
  qwenImageVaePlan,
  qwenImageVisionPlan,
  type GenerateQwenImageOptions,
  type GenerateQwenImageResult,
  type QwenImageSizes,
  type QwenImageType,
  type QwenImageVae,
} from "./sd/qwen-image";
// SD1 ControlNet (sd.cpp's fixed 320-channel layout, control_model.* names)
export {
  SD1_CONTROLNET_CHANNELS,
  SD1_CONTROLNET_HINT_CHANNELS,
  generateRandomSd15ControlNet,
  sd15ControlNetTensorPlan,
  type SdControlNetInit,
  type SdControlNetOptions,
  type SdControlNetResult,
  type SdControlNetTensorSpec,
} from "./sd/controlnet";
// SDXL (UNet + CLIP-L + OpenCLIP bigG + VAE in one checkpoint, sd_xl_base_1.0's names, q4_0 by default) and PhotoMaker v1 for it
export {
  SDXL_PREFIXES,
  SDXL_TINY,
  generateRandomSdxlModel,
  sdxlCheckpointPlan,
  sdxlClipPlan,
  sdxlUnetPlan,
  sdxlVaePlan,
  type GenerateSdxlOptions,
  type GenerateSdxlResult,
  type SdxlSizes,
  type SdxlType,
} from "./sd/sdxl";
export {
  PHOTOMAKER_LORA_BLOCK,
  PHOTOMAKER_V1,
  generateRandomPhotoMaker,
  photoMakerPlan,
  type GeneratePhotoMakerOptions,
  type PhotoMakerLoraTarget,
} from "./sd/photomaker";
// TAESD (tiny autoencoder, diffusers' AutoencoderTiny names) for SD1/SDXL (4 latent channels), the 16-channel DiTs and Flux 2 (32)
export { TAESD_CHANNELS, generateRandomTaesd, taesdTensors, type GenerateTaesdOptions } from "./sd/taesd";
// SD1 IP-Adapter (plain, ip-adapter_sd15's names) and the OpenCLIP ViT-H/14 vision encoder it needs
export { sd1CrossAttentions, type Sd1CrossAttention } from "./sd/shape";
export {
  CLIP_VISION_H14,
  clipVisionH14Plan,
  generateRandomClipVisionH14,
  generateRandomIpAdapter,
  generateRandomIpAdapterWeights,
  ipAdapterPlan,
  ipAdapterSizes,
  type GenerateIpAdapterOptions,
  type GenerateIpAdapterResult,
  type IpAdapterSizes,
  type IpAdapterType,
} from "./sd/ip-adapter";
