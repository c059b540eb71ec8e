/**
 * A structure-aware GGUF mutator: from a well-formed seed model (e.g.
 * stories260K) it writes files that are wrong on purpose — bad counts,
 * lengths, types, alignments, dimensions, offsets, metadata values
 * (hyperparameters that reach the kernels: epsilons, RoPE, head, expert and
 * layer counts), duplicate or missing vocabulary entries, vocabulary vs
 * embedding rows — plus random byte flips and truncations. Deterministic:
 * the same (base file, seed) gives the same bytes and the same description.
 *
 *   const base = parseGguf(fs.readFileSync("stories260K.gguf"));
 *   const c = mutateGguf(base, caseSeed(1, 42));  // { bytes, mutations: ["hparam llama.block_count=0 (uint32)"] }
 */
import { mulberry32 } from "../random";
import { cloneDoc, serializeGguf, type GgufDoc } from "./gguf-doc";
import { BYTE_MUTATIONS, type ByteMutation } from "./mutate-bytes";
import { hparam, hparamArray, arch, removeKey, duplicateKey, keyTypeSwap, vocab, alignment, version, type DocMutation } from "./mutate-meta";
import { tensorDims, tensorType, tensorTable, weights, geometry } from "./mutate-tensors";
import { chance, type Rng } from "./values";

export { caseSeed, type Rng } from "./values";

const DOC_MUTATIONS: [DocMutation, number][] = [
  [geometry, 8],
  [hparam, 30],
  [hparamArray, 5],
  [arch, 5],
  [removeKey, 5],
  [duplicateKey, 2],
  [keyTypeSwap, 5],
  [vocab, 18],
  [alignment, 6],
  [tensorDims, 8],
  [tensorType, 5],
  [tensorTable, 6],
  [weights, 3],
  [version, 1],
];

function weighted<T>(rng: Rng, list: [T, number][]): T {
  const total = list.reduce((a, [, w]) => a + w, 0);
  let r = rng() % total;
  for (const [m, w] of list) {
    if (r < w) return m;
    r -= w;
  }
  return list[0][0];
}

export interface MutatedGguf {
  seed: number;
  bytes: Buffer;
  /** What was done, in order ("hparam llama.block_count=0 (uint32)", "field tensor[3].dim[1]: 64 -> 0", …). */
  mutations: string[];
}

/**
 * One mutated copy of `base` (a parsed well-formed GGUF), deterministic in
 * `seed`: 1–3 structure-level edits and/or byte-level edits (3 in 4 cases
 * have exactly one edit, so a crash names its cause).
 */
export function mutateGguf(base: GgufDoc, seed: number): MutatedGguf {
  const rng = mulberry32(seed);
  const count = chance(rng, 0.75) ? 1 : 2 + (rng() % 2);
  const mutations: string[] = [];
  const doc = cloneDoc(base);
  const byteOps: ByteMutation[] = [];
  for (let k = 0; k < count; k++) {
    if (chance(rng, 0.72)) mutations.push(weighted(rng, DOC_MUTATIONS)(doc, rng));
    else byteOps.push(weighted(rng, BYTE_MUTATIONS));
  }
  let bytes = serializeGguf(doc);
  for (const op of byteOps) {
    const r = op(bytes, rng);
    bytes = r.bytes;
    mutations.push(r.desc);
  }
  return { seed, bytes, mutations };
}
