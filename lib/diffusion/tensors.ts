/**
 * The tensor list of a diffusion model file (GGUF or safetensors), read from
 * its header only: names, shapes and the bytes each tensor's data takes in
 * the file. For memory estimates (./memory.ts) before anything loads.
 */
import fs from "node:fs";
import { GenaiError } from "../errors";
import { checkGgufFile } from "../models/metadata";
import { parseGgufHeaderOffThread } from "../models/gguf-worker";

export interface TensorInfo {
  name: string;
  /** ggml order: ne[0] (the innermost, fastest-varying dimension) first. */
  shape: number[];
  /** Bytes of data in the file (GGUF: up to the next tensor's offset, so alignment padding included). */
  bytes: number;
}

/** Largest safetensors JSON header read (the format's own limit is 100 MB). */
const MAX_SAFETENSORS_HEADER = 100 * 2 ** 20;

/**
 * The tensors of a GGUF or safetensors file (by its magic: "GGUF", else a
 * safetensors header length). Shapes of safetensors files are reversed into ggml order.
 * @throws GenaiError MODEL_NOT_FOUND, INVALID_MODEL (unreadable or unknown format: e.g. .ckpt pickles)
 */
export async function readTensorInfos(path: string): Promise<TensorInfo[]> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(path, "r");
  } catch {
    throw new GenaiError("MODEL_NOT_FOUND", `model file not found: ${path}`);
  }
  let size: number;
  const head = Buffer.alloc(8);
  try {
    size = (await fh.stat()).size;
    await fh.read(head, 0, 8, 0);
    if (head.toString("latin1", 0, 4) !== "GGUF") return await readSafetensors(fh, path, size, head);
  } finally {
    await fh.close();
  }
  return readGguf(path);
}

async function readGguf(path: string): Promise<TensorInfo[]> {
  const fileBytes = await checkGgufFile(path);
  let parsed: Awaited<ReturnType<typeof parseGgufHeaderOffThread>>;
  try {
    parsed = await parseGgufHeaderOffThread(path, { tensors: true });
  } catch (e) {
    throw new GenaiError("INVALID_MODEL", `unreadable GGUF header (${(e as Error).message}): ${path}`, { cause: e });
  }
  const dataBytes = fileBytes - parsed.tensorDataOffset;
  const byOffset = [...(parsed.tensors ?? [])].sort((a, b) => a.offset - b.offset);
  return byOffset.map((t, i) => ({ name: t.name, shape: t.shape, bytes: (byOffset[i + 1]?.offset ?? dataBytes) - t.offset }));
}

async function readSafetensors(fh: fs.promises.FileHandle, path: string, size: number, head: Buffer): Promise<TensorInfo[]> {
  const n = Number(head.readBigUInt64LE(0));
  if (size < 8 || n < 2 || n > MAX_SAFETENSORS_HEADER || 8 + n > size) {
    throw new GenaiError("INVALID_MODEL", `neither GGUF nor safetensors (header length ${n} of a ${size}-byte file): ${path}`);
  }
  const json = Buffer.alloc(n);
  await fh.read(json, 0, n, 8);
  let header: Record<string, { shape?: number[]; data_offsets?: [number, number] }>;
  try {
    header = JSON.parse(json.toString("utf8"));
  } catch (e) {
    throw new GenaiError("INVALID_MODEL", `unreadable safetensors header (${(e as Error).message}): ${path}`, { cause: e });
  }
  const out: TensorInfo[] = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__" || !t || !Array.isArray(t.data_offsets)) continue;
    const [begin, end] = t.data_offsets;
    if (!(end >= begin) || 8 + n + end > size) throw new GenaiError("INVALID_MODEL", `safetensors tensor ${name} lies outside the file: ${path}`);
    out.push({ name, shape: [...(t.shape ?? [])].reverse(), bytes: end - begin });
  }
  return out;
}

/** The DiT families told apart by their tensors; "flux2-dev" has no text-encoder or memory checks here. */
export type DitFamilyTag = "zimage" | "flux2-klein" | "flux2-dev" | "qwenimage" | "flux1" | "sd3";

/**
 * The DiT family of a denoiser's tensors, by the rules of sd.cpp's
 * src/model_loader.cpp get_sd_version (487de75c): `cap_embedder.0` is
 * Z-Image; `double_stream_modulation_img` is Flux 2 ([dev] with a 48th
 * single block, `single_blocks.47`, else [klein]); `transformer_blocks.0.img_mod.1` is
 * Qwen-Image unless img_in is 128 wide (MageFlow) or it has
 * `time_text_embed.addition_t_embedding` (Qwen-Image-Layered); other
 * `double_blocks.` (diffusers' names: `single_transformer_blocks.`) are Flux 1 ("flux1": sd.cpp's VERSION_FLUX and its Fill,
 * Controls and Flex 2 variants, which take CLIP-L and T5: FluxCLIPEmbedder)
 * unless they are Chroma (`distilled_guidance_layer`, T5 only), Ovis-Image
 * (`img_mlp.gate_proj`, an LLM) or LongCat (a 3584-wide txt_in, an LLM);
 * then `joint_blocks.` is SD3's MMDiT ("sd3": SD3 Medium, SD3.5, VERSION_SD3).
 * Undefined for any other model (SD1/SDXL UNets, …).
 */
export function ditFamilyOf(tensors: readonly TensorInfo[]): DitFamilyTag | undefined {
  const has = (suffix: string) => tensors.some((t) => t.name.endsWith(suffix));
  if (has("cap_embedder.0.weight")) return "zimage";
  // sd.cpp tests single_blocks.47.linear1; any tensor of a 48th single block says the same of a whole file
  if (has("double_stream_modulation_img.lin.weight")) return tensors.some((t) => t.name.includes("single_blocks.47.")) ? "flux2-dev" : "flux2-klein";
  const imgIn = tensors.find((t) => t.name.endsWith("img_in.weight"));
  if (has("transformer_blocks.0.img_mod.1.weight") && imgIn && imgIn.shape[0] !== 128 && !has("time_text_embed.addition_t_embedding.weight"))
    return "qwenimage";
  // sd.cpp's is_flux: original names (double_blocks) or diffusers' (single_transformer_blocks, context_embedder for txt_in)
  const txtIn = tensors.find((t) => t.name.endsWith("txt_in.weight") || t.name.endsWith("context_embedder.weight"));
  if (
    tensors.some((t) => t.name.includes("double_blocks.") || t.name.includes("single_transformer_blocks.")) &&
    !has("distilled_guidance_layer.in_proj.weight") &&
    !has("double_blocks.0.img_mlp.gate_proj.weight") &&
    txtIn?.shape[0] !== 3584
  )
    return "flux1";
  if (tensors.some((t) => t.name.includes("joint_blocks."))) return "sd3";
  return undefined;
}
