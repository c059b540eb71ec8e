/**
 * Model parts stable-diffusion.cpp loads together but never checks against
 * each other (the TypeScript side of native/diffusion/part_check.h, which
 * checks the same again): sd.cpp (487de75c) loads them and then fails a
 * GGML_ASSERT — a process abort — at the first generation. The family is told
 * from the DiT's tensors as sd.cpp's src/model_loader.cpp get_sd_version does.
 */
import { GenaiError } from "../errors";
import { ditFamilyOf, readTensorInfos, type TensorInfo } from "./tensors";
import type { DiffusionLoadOptions } from "./types";

/** The Qwen2 tokenizer's ids reach 151673 (sd.cpp's tokenizers/qwen2_tokenizer.cpp). */
const QWEN_VOCAB = 151674;
/** Z-Image's attention heads: RoPE axes 32 + 48 + 48 (sd.cpp's z_image.hpp). */
const Z_IMAGE_HEAD_DIM = 128;
/** The DiT's adaLN input is min(hidden, 256) while the timestep embedding is 256 wide (z_image.hpp, mmdit.hpp). */
const Z_IMAGE_MIN_HIDDEN = 256;
/** patch 2 × 2 */
const PATCH_AREA = 4;
/** The Qwen2.5-VL vision tower's attention heads (fixed by sd.cpp's LLMVisionConfig). */
const QWEN_VISION_HEADS = 16;
/** T5-XXL's width: the zeros sd.cpp's FluxCLIPEmbedder gives the DiT without a T5 (conditioner.hpp). */
const FLUX1_T5_WIDTH = 4096;
/** SD3's context width (T5-XXL's, to which CLIP's token states are padded) and pooled vector (CLIP-L 768 + bigG 1280). */
const SD3_CONTEXT = 4096;
const SD3_POOLED = 2048;
/** A text encoder's tensors inside a single-file checkpoint (any of the prefixes sd.cpp's loader knows). */
const ENCODER_IN_CHECKPOINT = /t5xxl|clip_l|clip_g|text_encoders\.|cond_stage_model\.|conditioner\.|text_model\./;
/** The Qwen3 layers whose hidden states Flux 2 [klein] concatenates (sd.cpp's conditioner.hpp). */
const FLUX2_KLEIN_LAYERS = [9, 18, 27];

type Files = TensorInfo[][];

async function tensorsOf(file: string | undefined): Promise<TensorInfo[]> {
  if (!file) return [];
  try {
    return await readTensorInfos(file);
  } catch {
    return []; // missing or unreadable: the engine's load says so (MODEL_NOT_FOUND / INVALID_MODEL)
  }
}

/** shape[dim] of the first tensor whose name ends with `suffix`. */
function dim(files: Files, suffix: string, d: number): number | undefined {
  for (const ts of files) for (const t of ts) if (t.name.endsWith(suffix) && t.shape.length > d) return t.shape[d];
  return undefined;
}

/** The text encoder's hidden size and vocabulary (llama.cpp's token_embd or Hugging Face's embed_tokens). */
function embedding(encoder: Files): { hidden?: number; vocab?: number } {
  const embd = dim(encoder, "token_embd.weight", 0) !== undefined ? "token_embd.weight" : "embed_tokens.weight";
  return { hidden: dim(encoder, embd, 0), vocab: dim(encoder, embd, 1) };
}

/** 1 + the largest N in "blk.N." / "layers.N." (not a vision tower's, nor a single-file checkpoint's DiT's). */
function encoderLayers(encoder: Files): number {
  let layers = 0;
  for (const ts of encoder)
    for (const { name } of ts) {
      if (name.includes("visual.") || name.includes("diffusion_model.")) continue;
      const m = /(?:^|\.)(?:blk|layers)\.(\d+)\./.exec(name);
      if (m) layers = Math.max(layers, Number(m[1]) + 1);
    }
  return layers;
}

function failer(family: string): (why: string) => never {
  return (why) => {
    throw new GenaiError("INVALID_MODEL", `these ${family} parts do not fit together: ${why}`);
  };
}

function checkQwenVocab(fail: (why: string) => never, vocab: number | undefined): void {
  if (vocab !== undefined && vocab < QWEN_VOCAB) fail(`the text encoder's vocabulary has ${vocab} tokens; the Qwen tokenizer's ids go up to ${QWEN_VOCAB - 1}`);
}

function checkZImage(dit: Files, encoder: Files, vae: Files): void {
  const fail = failer("Z-Image");
  const te = embedding(encoder);
  const cap = dim(dit, "cap_embedder.1.weight", 0);
  if (cap !== undefined && te.hidden !== undefined && cap !== te.hidden)
    fail(`the text encoder (llm) has hidden size ${te.hidden}, the diffusion model's caption embedder takes ${cap} (use the text encoder of the same release)`);
  checkQwenVocab(fail, te.vocab);
  const xIn = dim(dit, "x_embedder.weight", 0);
  const hidden = dim(dit, "x_embedder.weight", 1);
  // conv weights in ggml order [kw, kh, in, out]: the decoder's input channels are the latent channels
  const latent = dim(vae, "decoder.conv_in.weight", 2);
  if (latent !== undefined && xIn !== undefined && xIn !== PATCH_AREA * latent)
    fail(`the VAE has ${latent} latent channels, the diffusion model takes ${xIn / PATCH_AREA}`);
  if (hidden !== undefined && hidden < Z_IMAGE_MIN_HIDDEN) fail(`the diffusion model's hidden size ${hidden} is under ${Z_IMAGE_MIN_HIDDEN}`);
  const head = dim(dit, "attention.q_norm.weight", 0);
  if (head !== undefined && head !== Z_IMAGE_HEAD_DIM) fail(`the diffusion model's attention heads are ${head} wide, not ${Z_IMAGE_HEAD_DIM}`);
}

function checkFlux2Klein(dit: Files, encoder: Files): void {
  const fail = failer("Flux 2 [klein]");
  const te = embedding(encoder);
  const layers = encoderLayers(encoder);
  const ctx = dim(dit, "txt_in.weight", 0);
  if (ctx !== undefined && te.hidden !== undefined && layers > 0) {
    const taken = Math.max(1, FLUX2_KLEIN_LAYERS.filter((l) => l <= layers).length);
    if (ctx !== taken * te.hidden)
      fail(
        `the text encoder (llm) gives ${taken} × ${te.hidden} = ${taken * te.hidden} features per token (${layers} layers), ` +
          `the diffusion model's txt_in takes ${ctx} (use the text encoder of the same release)`,
      );
  }
  checkQwenVocab(fail, te.vocab);
}

/**
 * The Qwen2.5-VL vision tower (llmVision, or `visual.` tensors in the llm
 * file): llama.cpp mmproj names (v.post_ln, mm.0, mm.2) or Hugging Face's
 * (merger.ln_q, merger.mlp.0, merger.mlp.2). sd.cpp (src/model/te/llm.hpp)
 * builds it with 16 heads (VisionAttention GGML_ASSERTs hidden = 16 × head
 * width when the model loads), rotates half of each head's width per image
 * axis (Rope::gen_qwen2vl_pe: an even head width), merges 2 × 2 patches into
 * the merger's input (4 × hidden) and puts its output in place of
 * <|image_pad|> tokens of the text encoder's input (its hidden size).
 */
function checkQwenVision(fail: (why: string) => never, vision: Files, teHidden: number | undefined): void {
  const hidden = dim(vision, "v.post_ln.weight", 0) ?? dim(vision, "merger.ln_q.weight", 0);
  const mergeIn = dim(vision, "mm.0.weight", 0) ?? dim(vision, "merger.mlp.0.weight", 0);
  const out = dim(vision, "mm.2.weight", 1) ?? dim(vision, "merger.mlp.2.weight", 1);
  if (hidden !== undefined && hidden % (2 * QWEN_VISION_HEADS) !== 0)
    fail(`the vision tower (llmVision) is ${hidden} wide, not ${QWEN_VISION_HEADS} heads of an even width (a multiple of ${2 * QWEN_VISION_HEADS})`);
  if (hidden !== undefined && mergeIn !== undefined && mergeIn !== PATCH_AREA * hidden)
    fail(`the vision tower's merger takes ${mergeIn} features, 2 × 2 patches of its width ${hidden} are ${PATCH_AREA * hidden}`);
  if (out !== undefined && teHidden !== undefined && out !== teHidden)
    fail(
      `the vision tower (llmVision) gives ${out}-wide image embeddings, the text encoder (llm) is ${teHidden} wide (use the vision tower of the same Qwen2.5-VL)`,
    );
}

function checkQwenImage(dit: Files, encoder: Files, vision: Files): void {
  const fail = failer("Qwen-Image");
  const te = embedding(encoder);
  const width = dim(dit, "txt_norm.weight", 0);
  if (width !== undefined && te.hidden !== undefined && width !== te.hidden)
    fail(`the text encoder (llm) has hidden size ${te.hidden}, the diffusion model takes ${width} (Qwen-Image's is Qwen2.5-VL 7B)`);
  checkQwenVocab(fail, te.vocab);
  checkQwenVision(fail, vision, te.hidden);
}

/**
 * The T5 of a load: the t5xxl file's tensors, or a single-file checkpoint's
 * under a "t5xxl" prefix (`inCheckpoint`), and its width (its embedding's, or
 * the first attention's input) in Hugging Face names ("shared.weight",
 * "encoder.block.0.layer.0.SelfAttention.q.weight") or llama.cpp's
 * ("token_embd.weight", "enc.blk.0.attn_q.weight"; sd.cpp's
 * name_conversion.cpp t5_name_map).
 */
function t5Of(t5: TensorInfo[], model: TensorInfo[]): { width?: number; inCheckpoint: boolean } {
  const files = [t5, model.filter((t) => t.name.includes("t5xxl"))];
  const width =
    dim(files, "shared.weight", 0) ?? dim(files, "token_embd.weight", 0) ?? dim(files, "SelfAttention.q.weight", 0) ?? dim(files, "attn_q.weight", 0);
  return { width, inCheckpoint: files[1].length > 0 };
}

/**
 * sd.cpp's FluxCLIPEmbedder (Flux 1 and its Fill / Controls / Flex 2
 * variants): T5's hidden states are the DiT's context (txt_in's input;
 * T5-XXL: 4096), CLIP-L's pooled output its vector. Without a T5 it feeds
 * 4096-wide zeros (so a DiT of another context width aborts in ggml_mul_mat
 * at the first generation), and without any text encoder it crashes
 * (a segmentation fault, no prompt condition at all).
 */
function checkFlux1(dit: Files, t5: TensorInfo[], model: TensorInfo[], load: DiffusionLoadOptions): void {
  const fail = failer("Flux 1");
  const { width, inCheckpoint } = t5Of(t5, model);
  const ctx = dim(dit, "txt_in.weight", 0) ?? dim(dit, "context_embedder.weight", 0); // original or diffusers' names
  if (!load.clipL && !load.t5xxl && !model.some((t) => ENCODER_IN_CHECKPOINT.test(t.name)))
    fail("no text encoder: Flux 1 takes t5xxl (T5-XXL, the prompt's features) and clipL (CLIP-L, its pooled vector)");
  if (ctx === undefined) return;
  if (width !== undefined && width !== ctx)
    fail(`the T5 text encoder (t5xxl) is ${width} wide, the diffusion model's txt_in takes ${ctx} (Flux 1's is T5-XXL, 4096)`);
  if (width === undefined && !load.t5xxl && !inCheckpoint && ctx !== FLUX1_T5_WIDTH)
    fail(`without t5xxl sd.cpp gives the diffusion model ${FLUX1_T5_WIDTH}-wide zeros as the prompt, its txt_in takes ${ctx}: give the T5 it was trained with`);
}

/**
 * sd.cpp's SD3CLIPEmbedder (SD3 / SD3.5, an MMDiT with `joint_blocks.`):
 * CLIP-L's and bigG's token states (768 + 1280) are zero-padded to 4096 and
 * joined with T5's over the tokens, so T5 must be 4096 wide (T5-XXL; another
 * width aborts in the join) and the MMDiT's context_embedder takes 4096; the
 * pooled vector is CLIP-L's + bigG's, 2048 wide (zeros for a missing one),
 * the y_embedder's input. Without any text encoder sd.cpp crashes at the
 * first generation.
 */
function checkSd3(dit: Files, t5: TensorInfo[], model: TensorInfo[], load: DiffusionLoadOptions): void {
  const fail = failer("SD3");
  const { width } = t5Of(t5, model);
  if (!load.clipL && !load.clipG && !load.t5xxl && !model.some((t) => ENCODER_IN_CHECKPOINT.test(t.name)))
    fail("no text encoder: SD3 takes clipL (CLIP-L), clipG (OpenCLIP bigG) and t5xxl (T5-XXL)");
  if (width !== undefined && width !== SD3_CONTEXT)
    fail(`the T5 text encoder (t5xxl) is ${width} wide; SD3 joins its token states with CLIP's padded to ${SD3_CONTEXT} (T5-XXL's width)`);
  const ctx = dim(dit, "context_embedder.weight", 0);
  if (ctx !== undefined && ctx !== SD3_CONTEXT) fail(`the diffusion model's context_embedder takes ${ctx} features, SD3's text encoders give ${SD3_CONTEXT}`);
  const pooled = dim(dit, "y_embedder.mlp.0.weight", 0);
  if (pooled !== undefined && pooled !== SD3_POOLED)
    fail(`the diffusion model's y_embedder takes ${pooled} features, SD3's pooled vector (CLIP-L 768 + bigG 1280) is ${SD3_POOLED}`);
}

/** A ControlNet adds its outputs to the UNet's blocks (sd.cpp's unet.hpp): both must have the same model channels. */
function checkControlNet(dit: Files, control: TensorInfo[]): void {
  const unet = dim(dit, "input_blocks.0.0.weight", 3);
  const cn = dim([control], "input_blocks.0.0.weight", 3);
  if (unet !== undefined && cn !== undefined && unet !== cn)
    throw new GenaiError(
      "INVALID_MODEL",
      `the ControlNet (controlNet) has ${cn} model channels, the diffusion model's UNet ${unet} (a ControlNet is made for one base model: use one for this model's family)`,
    );
}

/**
 * PhotoMaker fuses the ID embedding (CLIP-L's 768 + bigG's 1280 = 2048: its
 * fuse_module's width) into the prompt's class-token embeddings, which are
 * the UNet's cross-attention context (attn2.to_k's input): SDXL's 2048. On an
 * SD1 UNet (768) sd.cpp fails a GGML_ASSERT in PhotoMakerIDEncoderBlock at
 * the first generation with the identity.
 */
function checkPhotoMaker(dit: Files, pm: TensorInfo[]): void {
  const fused = dim([pm], "fuse_module.layer_norm.weight", 0);
  const context = dim(dit, "attn2.to_k.weight", 0);
  if (fused !== undefined && context !== undefined && fused !== context)
    throw new GenaiError(
      "INVALID_MODEL",
      `PhotoMaker (photoMaker) fuses ${fused}-wide embeddings into the prompt, the diffusion model's UNet reads a ${context}-wide context (PhotoMaker is made for SDXL)`,
    );
}

/**
 * An IP-Adapter projects the CLIP vision encoder's image embedding
 * (visual_projection's output, 1024 for ViT-H/14) into image tokens
 * (image_proj.proj's input; the "plus" variant's resampler takes the
 * encoder's hidden states, image_proj.proj_in's input = its width). sd.cpp
 * loads other widths and fails a GGML_ASSERT (an abort) in the projection at
 * the first generation with an image prompt.
 */
function checkIpAdapter(ip: TensorInfo[], vision: TensorInfo[]): void {
  const takes = dim([ip], "image_proj.proj.weight", 0);
  const plusTakes = dim([ip], "image_proj.proj_in.weight", 0);
  const embeds = dim([vision], "visual_projection.weight", 1);
  const hidden = dim([vision], "post_layernorm.weight", 0);
  const fail = (t: number, g: number, what: string) =>
    new GenaiError("INVALID_MODEL", `the IP-Adapter (ipAdapter) takes ${t}-wide image embeddings, the CLIP vision encoder (clipVision) gives ${g} (${what})`);
  if (takes !== undefined && embeds !== undefined && takes !== embeds) throw fail(takes, embeds, "its projection");
  if (plusTakes !== undefined && hidden !== undefined && plusTakes !== hidden) throw fail(plusTakes, hidden, "its hidden states");
}

/**
 * Checks the parts of a load against each other, per family:
 *  - Z-Image (a DiT with `cap_embedder`): the text encoder's hidden size =
 *    the caption embedder's input, the DiT's x_embedder input = 4 × the VAE's
 *    latent channels, heads 128 wide, hidden ≥ 256;
 *  - Flux 2 [klein] (`double_stream_modulation_img`, no `single_blocks.47`):
 *    the DiT's txt_in input = the Qwen3 hidden size × its layers in
 *    {9, 18, 27} (at least 1);
 *  - Qwen-Image (`transformer_blocks.0.img_mod.1`, img_in not 128 wide): the
 *    Qwen2.5-VL hidden size = the DiT's txt_norm width; its vision tower
 *    (llmVision), if any: 16 heads of an even width, a merger taking 2 × 2
 *    patches and giving the text encoder's hidden size;
 *  - all three: the text encoder's vocabulary covers the Qwen tokenizer's ids;
 *  - Flux 1 (`double_blocks.` otherwise, as ditFamilyOf tells it): a text
 *    encoder at all (clipL, t5xxl or a single-file checkpoint); T5's width =
 *    the DiT's txt_in input, and without a T5 that input is 4096;
 *  - SD3 (`joint_blocks.`): a text encoder at all; T5 4096 wide; the
 *    MMDiT's context_embedder taking 4096 and its y_embedder 2048;
 *  - a ControlNet: its model channels = the UNet's (sd.cpp builds every
 *    ControlNet with SD1's 320; on a narrower UNet it aborts in ggml_add);
 *  - PhotoMaker: its fused embedding width = the UNet's context width (SDXL's 2048);
 *  - an IP-Adapter: its image projection's input = the CLIP vision encoder's output.
 * A check whose tensors are not found (other families, unreadable files) is skipped.
 * @throws GenaiError INVALID_MODEL naming what does not fit
 */
export async function checkDiffusionParts(load: DiffusionLoadOptions): Promise<void> {
  const files = [
    load.model,
    load.diffusionModel,
    load.vae,
    load.llm,
    load.controlNet,
    load.llmVision,
    load.photoMaker,
    load.ipAdapter,
    load.clipVision,
    load.t5xxl,
  ];
  const [m, d, v, l, c, lv, pm, ip, cv, t5] = await Promise.all(files.map(tensorsOf));
  const dit = [d, m];
  const encoder = [l, m];
  checkControlNet(dit, c);
  checkPhotoMaker(dit, pm);
  checkIpAdapter(ip, cv);
  const family = ditFamilyOf(dit.flat());
  if (family === "zimage") checkZImage(dit, encoder, [v, m]);
  else if (family === "flux2-klein")
    checkFlux2Klein(dit, encoder); // Flux 2 [dev] has a Mistral encoder: not checked
  else if (family === "qwenimage") checkQwenImage(dit, encoder, [lv, l, m]);
  else if (family === "flux1") checkFlux1(dit, t5, m, load);
  else if (family === "sd3") checkSd3(dit, t5, m, load);
}
