/**
 * The synthetic SentencePiece ("llama" SPM) vocabulary of generated models
 * (deps/llama.cpp: src/llama-vocab.cpp; token layout as in the reference
 * model stories260K.gguf).
 */

/** llama_token_type values (include/llama.h) used in `tokenizer.ggml.token_type`. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, BYTE: 6 } as const;

/** The synthetic SPM vocabulary: tokens, scores and token types, `size` entries. */
export interface SyntheticVocab {
  tokens: string[];
  scores: Float32Array;
  tokenTypes: Int32Array;
  /** Ids of the ChatML control tokens when present. */
  imStart?: number;
  imEnd?: number;
}

/**
 * Builds a deterministic SPM vocabulary of exactly `size` unique tokens:
 * `<unk>`=0 (UNKNOWN), `<s>`=1, `</s>`=2 (CONTROL), `<0x00>`..`<0xFF>` (BYTE, ids 3..258),
 * optionally `<|im_start|>`, `<|im_end|>` (CONTROL), then `userTokens` (USER_DEFINED:
 * matched in any text and always shown, as models ship `<think>` or `<tool_call>`), then printable pieces
 * ('▁', single ASCII characters, '▁'-prefixed and bare letter n-grams) with
 * scores -1, -2, ... (special and byte tokens score 0, as in stories260K).
 */
export function syntheticSpmVocab(size: number, opts: { chatTokens?: boolean; userTokens?: readonly string[] } = {}): SyntheticVocab {
  const tokens: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TOKEN_TYPE.UNKNOWN, TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TOKEN_TYPE.BYTE);
  }
  let imStart: number | undefined;
  let imEnd: number | undefined;
  if (opts.chatTokens) {
    imStart = tokens.length;
    tokens.push("<|im_start|>");
    types.push(TOKEN_TYPE.CONTROL);
    imEnd = tokens.length;
    tokens.push("<|im_end|>");
    types.push(TOKEN_TYPE.CONTROL);
  }
  for (const t of opts.userTokens ?? []) {
    if (t === "" || tokens.includes(t)) throw new RangeError(`user token ${JSON.stringify(t)} is empty or repeated`);
    tokens.push(t);
    types.push(TOKEN_TYPE.USER_DEFINED);
  }
  if (size < tokens.length) throw new RangeError(`vocab size ${size} is smaller than the ${tokens.length} fixed tokens`);
  const nFixed = tokens.length;
  const seen = new Set(tokens);
  const scores = new Float32Array(size);
  const push = (piece: string): boolean => {
    if (tokens.length >= size) return false;
    if (seen.has(piece)) return true;
    seen.add(piece);
    scores[tokens.length] = -(tokens.length - nFixed + 1);
    tokens.push(piece);
    types.push(TOKEN_TYPE.NORMAL);
    return true;
  };
  const SP = "\u2581"; // '▁', SentencePiece's space
  push(SP);
  for (let c = 0x21; c <= 0x7e; c++) push(String.fromCharCode(c));
  const lower = "abcdefghijklmnopqrstuvwxyz";
  const upper = lower.toUpperCase();
  for (const ch of lower + upper + "0123456789") push(SP + ch);
  // n-grams over a-z, n = 2, 3, ...: "▁xy" then "xy", lexicographic
  for (let n = 2; tokens.length < size; n++) {
    const total = 26 ** n;
    for (let k = 0; k < total && tokens.length < size; k++) {
      let s = "";
      let x = k;
      for (let j = 0; j < n; j++) {
        s = lower[x % 26] + s;
        x = Math.floor(x / 26);
      }
      push(SP + s);
      push(s);
    }
  }
  return { tokens, scores, tokenTypes: Int32Array.from(types), imStart, imEnd };
}
