/**
 * Random-weight multimodal projectors ("mmproj" GGUF files), the file
 * llama.cpp's libmtmd loads beside a text model for image input, so tests can
 * exercise vision without downloading a real model. Only the layout and the
 * metadata matter; the weights are seeded noise.
 *
 * Family: `clip.projector_type = "mlp"` (PROJECTOR_TYPE_MLP), LLaVA-1.5: a
 * CLIP ViT vision tower plus a 2-layer GELU MLP `mm.0` → `mm.2`. It is the
 * simplest image projector clip.cpp can both load and encode: no special
 * image tokens in the text vocabulary (mtmd.cpp `init_vision` adds no
 * begin/end markers for it), fixed-size preprocessing (no tiling, no merge,
 * no RoPE), and only generic ViT tensors.
 *
 * Layout (deps/llama.cpp/tools/mtmd):
 * - keys and tensor names: clip-impl.h (`KEY_*`, `TN_*`);
 * - what is read and which keys are required: clip.cpp
 *   `clip_model_loader::load_hparams` (required: clip.has_vision_encoder,
 *   clip.projector_type, clip.vision.{embedding_length, attention.head_count,
 *   feed_forward_length, block_count, projection_dim,
 *   attention.layer_norm_epsilon, image_size, patch_size}, uint32/float32;
 *   image_mean/image_std, 3 floats each) and `load_tensors` (v.* ViT tensors,
 *   mm.0/mm.2 for "mlp");
 * - the graph: models/llava.cpp `clip_graph_llava::build` (conv patch
 *   embedding, class token, learned positions, pre-LN, then n_layer − 1
 *   pre-norm blocks: LLaVA takes the penultimate layer; so `layers` = 1 loads
 *   one block and runs none), then mm.0 → GELU → mm.2;
 * - the output width: clip.cpp `clip_n_mmproj_embd` = mm.2.weight ne[1], which
 *   mtmd.cpp checks against the text model's n_embd ("mismatch between text
 *   model (n_embd = …) and mmproj").
 *
 * Image tokens: an image of any size is resized to image_size² (mtmd-image.cpp
 * `mtmd_image_preprocessor_fixed_size`, as there are no
 * clip.vision.image_grid_pinpoints) and yields one chunk of
 * (image_size / patch_size)² embeddings (clip.cpp `clip_n_output_tokens`:
 * n_patches, unchanged for PROJECTOR_TYPE_MLP; the class token is dropped by
 * the "patches" row selection). Defaults 56 / 14 → 16 tokens per image.
 *
 * Tensors (ggml order, ne[0] first; all f32; H = hidden, F = ff, E = textEmbd,
 * P = patchSize, N = (imageSize / patchSize)²):
 *   v.class_embd [H]; v.patch_embd.weight [P, P, 3, H]; v.patch_embd.bias [H];
 *   v.position_embd.weight [H, N + 1]; v.pre_ln.{weight,bias} [H];
 *   per block i: v.blk.i.ln1.{weight,bias} [H], v.blk.i.attn_{q,k,v,out}.weight
 *   [H, H] and .bias [H], v.blk.i.ln2.{weight,bias} [H],
 *   v.blk.i.ffn_up.weight [H, F], .bias [F], v.blk.i.ffn_down.weight [F, H], .bias [H];
 *   mm.0.weight [H, E], mm.0.bias [E], mm.2.weight [E, E], mm.2.bias [E].
 * LayerNorm weights are 1.0, everything else uniform in ±scale.
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType, GgufWriter } from "../gguf/writer";
import { CHUNK_BYTES, uint32Seed } from "../random";
import { produceTensor } from "./generate";

export interface MmprojOptions {
  /** n_embd of the text model the projector feeds (`llama.embedding_length`): the width of mm.2. Required. */
  textEmbd: number;
  /** Side of the square image the encoder takes (`clip.vision.image_size`), a multiple of patchSize. Default 56. */
  imageSize?: number;
  /** Side of a patch (`clip.vision.patch_size`). Default 14 (CLIP ViT-L/14). */
  patchSize?: number;
  /** ViT width (`clip.vision.embedding_length`), a multiple of heads. Default 32. */
  hidden?: number;
  /** ViT blocks (`clip.vision.block_count`); the LLaVA graph runs all but the last. Default 2. */
  layers?: number;
  /** Attention heads (`clip.vision.attention.head_count`). Default 4. */
  heads?: number;
  /** ViT feed-forward width (`clip.vision.feed_forward_length`). Default 4·hidden. */
  ff?: number;
  /** PRNG seed (uint32); same seed and options give byte-identical files. Default 1. */
  seed?: number;
  /** Weights are roughly uniform in ±scale. Default 0.05. */
  scale?: number;
}

export interface MmprojResult {
  path: string;
  /** File size in bytes. */
  bytes: number;
  tensors: number;
  /** Embeddings (positions in the text context) one image becomes: (imageSize / patchSize)². */
  imageTokens: number;
  /** `clip.projector_type`: "mlp". */
  projectorType: string;
}

/** CLIP's normalization (openai/clip-vit-large-patch14 preprocessor_config.json), as LLaVA-1.5 mmproj files carry it. */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/**
 * Writes a random-weight LLaVA-style ("mlp") mmproj GGUF to `file`, for a
 * text model with `n_embd = opts.textEmbd` (e.g. generateRandomLlamaModel).
 * @throws RangeError for a shape clip.cpp cannot take.
 */
export async function generateRandomMmproj(file: string, opts: MmprojOptions): Promise<MmprojResult> {
  const { textEmbd } = opts;
  const imageSize = opts.imageSize ?? 56;
  const patchSize = opts.patchSize ?? 14;
  const hidden = opts.hidden ?? 32;
  const layers = opts.layers ?? 2;
  const heads = opts.heads ?? 4;
  const ff = opts.ff ?? 4 * hidden;
  const scale = opts.scale ?? 0.05;
  const dims = { textEmbd, imageSize, patchSize, hidden, layers, heads, ff };
  for (const [k, v] of Object.entries(dims)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  if (imageSize % patchSize !== 0) throw new RangeError(`imageSize ${imageSize} is not a multiple of patchSize ${patchSize}`);
  if (imageSize > 8192) throw new RangeError(`imageSize ${imageSize} is too large (clip.cpp: max 8192)`);
  if (hidden % heads !== 0) throw new RangeError(`hidden ${hidden} is not a multiple of heads ${heads}`);
  if (!(scale > 0 && scale < 1e3)) throw new RangeError(`scale must be positive, got ${scale}`);
  const seed = uint32Seed(opts.seed);
  const side = imageSize / patchSize;
  const imageTokens = side * side;
  const projectorType = "mlp";

  const w = new GgufWriter();
  w.setString("general.architecture", "clip");
  w.setString("general.type", "mmproj");
  w.setString("general.name", `random-mmproj-${projectorType}-${layers}x${hidden}`);
  w.setString("general.description", "random-weight LLaVA-1.5-style projector for tests (genai-native tools)");
  w.setUint32("general.file_type", 0); // all f32
  w.setBool("clip.has_vision_encoder", true);
  w.setString("clip.projector_type", projectorType);
  w.setBool("clip.use_gelu", false); // CLIP's quick_gelu in the ViT blocks
  w.setUint32("clip.vision.image_size", imageSize);
  w.setUint32("clip.vision.patch_size", patchSize);
  w.setUint32("clip.vision.embedding_length", hidden);
  w.setUint32("clip.vision.feed_forward_length", ff);
  w.setUint32("clip.vision.block_count", layers);
  w.setUint32("clip.vision.projection_dim", textEmbd);
  w.setUint32("clip.vision.attention.head_count", heads);
  w.setFloat32("clip.vision.attention.layer_norm_epsilon", 1e-5);
  w.setFloat32Array("clip.vision.image_mean", CLIP_MEAN);
  w.setFloat32Array("clip.vision.image_std", CLIP_STD);

  const norms = new Set<string>();
  const add = (name: string, shape: number[], init: "norm" | "weight" = "weight") => {
    w.addTensor(name, shape, GgmlType.F32);
    if (init === "norm") norms.add(name);
  };
  add("v.class_embd", [hidden]);
  add("v.patch_embd.weight", [patchSize, patchSize, 3, hidden]);
  add("v.patch_embd.bias", [hidden]);
  add("v.position_embd.weight", [hidden, imageTokens + 1]);
  add("v.pre_ln.weight", [hidden], "norm");
  add("v.pre_ln.bias", [hidden]);
  for (let i = 0; i < layers; i++) {
    const b = `v.blk.${i}`;
    add(`${b}.ln1.weight`, [hidden], "norm");
    add(`${b}.ln1.bias`, [hidden]);
    for (const m of ["attn_q", "attn_k", "attn_v", "attn_out"]) {
      add(`${b}.${m}.weight`, [hidden, hidden]);
      add(`${b}.${m}.bias`, [hidden]);
    }
    add(`${b}.ln2.weight`, [hidden], "norm");
    add(`${b}.ln2.bias`, [hidden]);
    add(`${b}.ffn_up.weight`, [hidden, ff]);
    add(`${b}.ffn_up.bias`, [ff]);
    add(`${b}.ffn_down.weight`, [ff, hidden]);
    add(`${b}.ffn_down.bias`, [hidden]);
  }
  add("mm.0.weight", [hidden, textEmbd]);
  add("mm.0.bias", [textEmbd]);
  add("mm.2.weight", [textEmbd, textEmbd]);
  add("mm.2.bias", [textEmbd]);

  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const buf = new ArrayBuffer(CHUNK_BYTES);
  const layout = await w.writeFile(file, (t, write) => produceTensor(t, norms.has(t.name) ? "norm" : "weight", seed, scale, buf, write));
  const bytes = fs.statSync(file).size;
  if (bytes !== layout.fileBytes) throw new Error(`internal: wrote ${bytes} bytes, expected ${layout.fileBytes}`);
  return { path: path.resolve(file), bytes, tensors: w.tensors.length, imageTokens, projectorType };
}
