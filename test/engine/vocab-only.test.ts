// LlamaModel.load(path, { vocabOnly: true }): the tokenizer and metadata without weights.
// (Model info used to ask llama.cpp the head counts of a model with no layers:
// llama-hparams.cpp asserts il < n_layer, and the process aborted.)
import { describe, expect, it } from "vitest";
import { GenaiError, LlamaModel } from "../../lib/index";
import { storiesPath } from "../helpers";

describe("vocabOnly", () => {
  it("loads, tokenizes and detokenizes like the full model; createContext is INVALID_ARGUMENT", async () => {
    const path = await storiesPath();
    const vocab = await LlamaModel.load(path, { vocabOnly: true });
    const full = await LlamaModel.load(path);
    try {
      expect(vocab.vocabOnly).toBe(true);
      expect(full.vocabOnly).toBe(false);
      expect(vocab.metadata.architecture).toBe("llama");
      expect(vocab.metadata.vocabSize).toBe(512);
      const text = "Once upon a time, there was a little dog.";
      const ids = await vocab.tokenize(text);
      expect(Array.from(ids)).toEqual(Array.from(await full.tokenize(text)));
      expect(await vocab.detokenize(ids, { removeSpecial: true })).toBe(await full.detokenize(ids, { removeSpecial: true }));
      expect((await vocab.detokenize(ids, { removeSpecial: true })).trim()).toBe(text);
      const info = vocab.handle().info();
      expect({ layers: info.layers, heads: info.heads, kvHeads: info.kvHeads, vocabOnly: info.vocabOnly }).toEqual({
        layers: 0,
        heads: 0,
        kvHeads: 0,
        vocabOnly: true,
      });
      expect(info.vocabSize).toBe(512);
      const err = await vocab.createContext().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GenaiError);
      expect((err as GenaiError).code).toBe("INVALID_ARGUMENT");
      // the native side refuses too (a caller that skips the TypeScript check)
      expect(() => vocab.handle().createContext({} as never)).toThrow(/vocabOnly/);
    } finally {
      await vocab.dispose();
      await full.dispose();
    }
  });
});
