/**
 * Model references and the Hugging Face hub: `hf:<owner>/<repo>[:<quant>]`,
 * `hf:<owner>/<repo>/<path/file.gguf>`, https URLs and local paths. A repo's
 * files come from the hub's tree API through @huggingface/hub (each LFS
 * file's size and sha256); the quant is picked from the GGUF file names
 * (case-insensitive; shards `-00001-of-0000N.gguf` grouped; `mmproj` files
 * are projectors, never the model). `HF_ENDPOINT` and `HF_TOKEN` are honoured.
 */
import { GenaiError } from "../errors";

export type ModelRef = { kind: "hf"; repo: string; quant?: string; file?: string } | { kind: "url"; url: string } | { kind: "path"; path: string };

/** @throws GenaiError INVALID_ARGUMENT for a malformed hf: reference */
export function parseModelRef(ref: string): ModelRef {
  if (ref.startsWith("hf:")) {
    const m = /^hf:([\w.-]+\/[\w.-]+)(?::([\w.-]+)|\/(.+\.gguf))?$/i.exec(ref);
    if (!m) throw new GenaiError("INVALID_ARGUMENT", `${ref} is not hf:<owner>/<repo>[:<quant>] or hf:<owner>/<repo>/<file.gguf>`);
    return { kind: "hf", repo: m[1], ...(m[2] ? { quant: m[2] } : {}), ...(m[3] ? { file: m[3] } : {}) };
  }
  if (/^https?:\/\//i.test(ref)) return { kind: "url", url: ref };
  return { kind: "path", path: ref };
}

/** The hub's base URL: $HF_ENDPOINT, else https://huggingface.co. */
export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
}

/** The hub token: the given one, else $HF_TOKEN. */
export function hubToken(token?: string): string | undefined {
  return token ?? (process.env.HF_TOKEN || undefined);
}

export interface HubFile {
  /** Path in the repo. */
  path: string;
  /** Bytes. */
  size: number;
  /** The LFS object's sha256 (lower-case hex), when the hub lists one. */
  sha256?: string;
}

/**
 * The .gguf files of `repo` (recursive listing).
 * @throws GenaiError ACCESS_DENIED (401/403: gated or private), MODEL_NOT_FOUND (404, unreachable)
 */
export async function listGgufFiles(repo: string, opts: { endpoint?: string; token?: string } = {}): Promise<HubFile[]> {
  // loaded only here: the main entry's require never pays for the hub client
  const { listFiles } = await import("@huggingface/hub");
  const token = hubToken(opts.token);
  const files: HubFile[] = [];
  try {
    for await (const f of listFiles({
      repo: { type: "model", name: repo },
      recursive: true,
      hubUrl: opts.endpoint ?? hubEndpoint(),
      ...(token ? { accessToken: token as `hf_${string}` } : {}),
    })) {
      if (f.type === "file" && f.path.toLowerCase().endsWith(".gguf"))
        files.push({ path: f.path, size: f.lfs?.size ?? f.size, ...(f.lfs ? { sha256: f.lfs.oid } : {}) });
    }
  } catch (e) {
    const status = (e as { statusCode?: number }).statusCode;
    if (status === 401 || status === 403)
      throw new GenaiError("ACCESS_DENIED", `hf:${repo}: HTTP ${status} — a gated or private repository: set HF_TOKEN with access to it`, { cause: e });
    if (status === 404) throw new GenaiError("MODEL_NOT_FOUND", `hf:${repo}: no such repository (HTTP 404)`, { cause: e });
    throw new GenaiError("MODEL_NOT_FOUND", `hf:${repo}: the hub could not be asked (${(e as Error).message})`, { cause: e });
  }
  return files;
}

const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;
// a quantization or float type at the end of a GGUF file name (before the shard suffix)
const QUANT = /[-._]((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32|FP16|TQ\d_\d)(?:-\d{5}-of-\d{5})?\.gguf$/i;
/** The quant picked when none is asked for: llama.cpp's -hf default first (common/arg.cpp), then smaller to larger. */
export const DEFAULT_QUANTS = ["Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32"] as const;

/** The quant named in a GGUF file name, upper-case ("Q4_K_M"), or undefined. */
export function quantOf(file: string): string | undefined {
  return QUANT.exec(file)?.[1]?.toUpperCase();
}

const isProjector = (f: HubFile) => /mmproj/i.test(f.path.split("/").pop() ?? "");

/**
 * The model's file(s) in `files`: the named file, or the quant asked for, or
 * the first of DEFAULT_QUANTS present; shards in order. `mmproj` is the
 * repo's projector (for vision models), when there is one.
 * @throws GenaiError MODEL_NOT_FOUND naming the quants the repo has
 */
export function pickModelFiles(
  repo: string,
  files: HubFile[],
  want: { quant?: string; file?: string },
): { files: HubFile[]; quant?: string; mmproj?: HubFile } {
  const models = files.filter((f) => !isProjector(f));
  // the projector: F16 first (llama.cpp's own conversions publish it so), then BF16, Q8_0, any
  const projectors = files.filter(isProjector);
  const mmproj = ["F16", "BF16", "Q8_0"].map((q) => projectors.find((f) => quantOf(f.path) === q)).find((f) => f) ?? projectors[0];
  if (want.file !== undefined) {
    const f = files.find((x) => x.path === want.file);
    if (!f) throw new GenaiError("MODEL_NOT_FOUND", `hf:${repo} has no file ${want.file}`);
    return { files: shardsOf(files, f), quant: quantOf(f.path), ...(mmproj && f !== mmproj ? { mmproj } : {}) };
  }
  const quants = [...new Set(models.map((f) => quantOf(f.path)).filter((q): q is string => !!q))];
  let quant = want.quant?.toUpperCase();
  if (quant === undefined) quant = DEFAULT_QUANTS.find((q) => quants.includes(q)) ?? quants[0];
  const first = models.find((f) => (quant === undefined ? true : quantOf(f.path) === quant) && (!SHARD.test(f.path) || SHARD.exec(f.path)?.[1] === "00001"));
  if (!first)
    throw new GenaiError(
      "MODEL_NOT_FOUND",
      `hf:${repo} has no ${want.quant ?? "GGUF"} model file${quants.length ? ` (its quants: ${quants.join(", ")})` : ""}`,
    );
  return { files: shardsOf(files, first), ...(quant ? { quant } : {}), ...(mmproj ? { mmproj } : {}) };
}

/** A shard's siblings 1 … N in order (the file alone when it is not sharded). */
function shardsOf(files: HubFile[], f: HubFile): HubFile[] {
  const m = SHARD.exec(f.path);
  if (!m) return [f];
  const n = Number(m[2]);
  const base = f.path.slice(0, f.path.length - m[0].length);
  const out: HubFile[] = [];
  for (let i = 1; i <= n; i++) {
    const name = `${base}-${String(i).padStart(5, "0")}-of-${m[2]}.gguf`;
    const shard = files.find((x) => x.path === name);
    if (!shard) throw new GenaiError("MODEL_NOT_FOUND", `shard ${name} is missing from the repository`);
    out.push(shard);
  }
  return out;
}

/** The hub's download URL of a file. */
export function resolveUrl(repo: string, file: string, endpoint = hubEndpoint()): string {
  return `${endpoint}/${repo}/resolve/main/${file.split("/").map(encodeURIComponent).join("/")}`;
}
