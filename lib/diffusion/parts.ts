/**
 * Model parts stable-diffusion.cpp loads together but never checks against
 * each other (the TypeScript side of native/diffusion/part_check.h, which
 * checks the same again): sd.cpp (487de75c) loads them and then fails a
 * GGML_ASSERT — a process abort — at the first generation.
 */
import { GenaiError } from "../errors";
import { readTensorInfos, type TensorInfo } from "./tensors";
import type { DiffusionLoadOptions } from "./types";

/** The Qwen2 tokenizer's ids reach 151673 (sd.cpp's tokenizers/qwen2_tokenizer.cpp). */
const QWEN_VOCAB = 151674;
/** Z-Image's attention heads: RoPE axes 32 + 48 + 48 (sd.cpp's z_image.hpp). */
const Z_IMAGE_HEAD_DIM = 128;
/** The DiT's adaLN input is min(hidden, 256) while the timestep embedding is 256 wide (z_image.hpp, mmdit.hpp). */
const Z_IMAGE_MIN_HIDDEN = 256;
/** patch 2 × 2 */
const PATCH_AREA = 4;

async function tensorsOf(file: string | undefined): Promise<TensorInfo[]> {
  if (!file) return [];
  try {
    return await readTensorInfos(file);
  } catch {
    return []; // missing or unreadable: the engine's load says so (MODEL_NOT_FOUND / INVALID_MODEL)
  }
}

/** shape[dim] of the first tensor whose name ends with `suffix`. */
function dim(files: TensorInfo[][], suffix: string, d: number): number | undefined {
  for (const ts of files) for (const t of ts) if (t.name.endsWith(suffix) && t.shape.length > d) return t.shape[d];
  return undefined;
}

/**
 * Z-Image (a DiT with `cap_embedder`: sd.cpp's VERSION_Z_IMAGE): the text
 * encoder's hidden size = the caption embedder's input, its vocabulary covers
 * the Qwen tokenizer's ids, the DiT's x_embedder input = 4 × the VAE's latent
 * channels, heads 128 wide, hidden ≥ 256. A check whose tensors are not found
 * (other families, unreadable files) is skipped.
 * @throws GenaiError INVALID_MODEL naming what does not fit
 */
export async function checkDiffusionParts(load: DiffusionLoadOptions): Promise<void> {
  const [m, d, v, l] = await Promise.all([load.model, load.diffusionModel, load.vae, load.llm].map(tensorsOf));
  const dit = [d, m];
  if (dim(dit, "cap_embedder.0.weight", 0) === undefined) return;
  const fail = (why: string): never => {
    throw new GenaiError("INVALID_MODEL", `these Z-Image parts do not fit together: ${why}`);
  };
  const encoder = [l, m];
  const embd = dim(encoder, "token_embd.weight", 0) !== undefined ? "token_embd.weight" : "embed_tokens.weight";
  const teHidden = dim(encoder, embd, 0);
  const teVocab = dim(encoder, embd, 1);
  const cap = dim(dit, "cap_embedder.1.weight", 0);
  if (cap !== undefined && teHidden !== undefined && cap !== teHidden)
    fail(`the text encoder (llm) has hidden size ${teHidden}, the diffusion model's caption embedder takes ${cap} (use the text encoder of the same release)`);
  if (teVocab !== undefined && teVocab < QWEN_VOCAB)
    fail(`the text encoder's vocabulary has ${teVocab} tokens; the Qwen tokenizer's ids go up to ${QWEN_VOCAB - 1}`);
  const xIn = dim(dit, "x_embedder.weight", 0);
  const hidden = dim(dit, "x_embedder.weight", 1);
  // conv weights in ggml order [kw, kh, in, out]: the decoder's input channels are the latent channels
  const latent = dim([v, m], "decoder.conv_in.weight", 2);
  if (latent !== undefined && xIn !== undefined && xIn !== PATCH_AREA * latent)
    fail(`the VAE has ${latent} latent channels, the diffusion model takes ${xIn / PATCH_AREA}`);
  if (hidden !== undefined && hidden < Z_IMAGE_MIN_HIDDEN) fail(`the diffusion model's hidden size ${hidden} is under ${Z_IMAGE_MIN_HIDDEN}`);
  const head = dim(dit, "attention.q_norm.weight", 0);
  if (head !== undefined && head !== Z_IMAGE_HEAD_DIM) fail(`the diffusion model's attention heads are ${head} wide, not ${Z_IMAGE_HEAD_DIM}`);
}
