/**
 * LoRA adapters for the LLM (llama.cpp's llama_adapter_lora): a GGUF adapter
 * loaded once per model ({@link LlamaModel.loadLora}) and applied to any of
 * its contexts with a scale ({@link LlamaContext.setLoras}), swapped without
 * reloading the model. The output of an adapted matrix W is
 * W·x + scale · (alpha / rank) · B·A·x (llama.cpp's llm_build_lora_mm).
 */
import type { LoraHandle } from "../binding/types";
import { GenaiError } from "../errors";

export class LoraAdapter {
  /** The adapter file. */
  readonly path: string;
  /** adapter.lora.alpha (0 when the file has none). */
  readonly alpha: number;
  #native: LoraHandle | undefined;

  /** @internal use {@link LlamaModel.loadLora} */
  constructor(handle: LoraHandle) {
    this.#native = handle;
    const i = handle.info();
    this.path = i.path;
    this.alpha = i.alpha;
  }

  /** @internal */
  handle(): LoraHandle {
    if (!this.#native) throw new GenaiError("DISPOSED", "the LoRA adapter has been disposed");
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /**
   * Drops this handle; contexts that apply the adapter keep it (and its
   * weights) until they stop applying it or are disposed. Idempotent.
   */
  dispose(): void {
    this.#native?.dispose();
    this.#native = undefined;
  }
}
