import { parseGguf, type GgufDoc } from "./gguf-doc";
import { chance, pick, type Rng } from "./values";

// ---- byte-level mutations on the serialized file

export type ByteMutation = (bytes: Buffer, rng: Rng) => { bytes: Buffer; desc: string };

const INTERESTING_64 = [
  0n,
  1n,
  2n,
  0x7fn,
  0xffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  1n << 62n,
  (1n << 63n) - 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

export const field: ByteMutation = (bytes, rng) => {
  let doc: GgufDoc;
  try {
    doc = parseGguf(bytes);
  } catch {
    return flips(bytes, rng);
  }
  // favour the rare kinds (counts, types, dims) over the many string lengths
  const kinds = [...new Set(doc.fields.map((f) => f.kind))];
  const kind = pick(rng, kinds);
  const candidates = doc.fields.filter((f) => f.kind === kind);
  const f = pick(rng, candidates);
  const out = Buffer.from(bytes);
  const old = f.width === 4 ? BigInt(out.readUInt32LE(f.at)) : out.readBigUInt64LE(f.at);
  const v = chance(rng, 0.3) ? pick(rng, [old + 1n, old - 1n, old * 2n, old + 8n, old ^ 0x80n]) : pick(rng, INTERESTING_64);
  if (f.width === 4) out.writeUInt32LE(Number(BigInt.asUintN(32, v)), f.at);
  else out.writeBigUInt64LE(BigInt.asUintN(64, v), f.at);
  return { bytes: out, desc: `field ${f.label}: ${old} -> ${BigInt.asUintN(f.width * 8, v)}` };
};

function headerEnd(bytes: Buffer): number {
  try {
    return parseGguf(bytes).headerBytes;
  } catch {
    return Math.min(bytes.length, 1 << 16);
  }
}

export const flips: ByteMutation = (bytes, rng) => {
  const out = Buffer.from(bytes);
  const inHeader = chance(rng, 0.7);
  const end = inHeader ? headerEnd(bytes) : bytes.length;
  const n = pick(rng, [1, 1, 2, 4, 16]);
  const at: number[] = [];
  for (let k = 0; k < n; k++) {
    const i = rng() % end;
    const how = rng() % 3;
    out[i] = how === 0 ? out[i] ^ (1 + (rng() % 255)) : how === 1 ? 0xff : 0;
    at.push(i);
  }
  return { bytes: out, desc: `flip ${n} byte(s) at ${at.slice(0, 4).join(",")}${n > 4 ? ",…" : ""}${inHeader ? " (header)" : ""}` };
};

export const truncate: ByteMutation = (bytes, rng) => {
  const end = headerEnd(bytes);
  const where = rng() % 3;
  const n = where === 0 ? rng() % end : where === 1 ? end + (rng() % Math.max(1, bytes.length - end)) : bytes.length - 1 - (rng() % 64);
  return { bytes: bytes.subarray(0, Math.max(0, n)), desc: `truncate to ${n} of ${bytes.length}` };
};

export const splice: ByteMutation = (bytes, rng) => {
  const end = headerEnd(bytes);
  const at = 24 + (rng() % Math.max(1, end - 24));
  const n = 1 + (rng() % 16);
  if (chance(rng, 0.5)) return { bytes: Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + n)]), desc: `delete ${n} byte(s) at ${at}` };
  const ins = Buffer.alloc(n, rng() & 0xff);
  return { bytes: Buffer.concat([bytes.subarray(0, at), ins, bytes.subarray(at)]), desc: `insert ${n} byte(s) at ${at}` };
};

export const BYTE_MUTATIONS: [ByteMutation, number][] = [
  [field, 10],
  [flips, 6],
  [truncate, 3],
  [splice, 2],
];
