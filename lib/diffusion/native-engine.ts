/**
 * The stable-diffusion.cpp engine inside genai_native.node. This version of
 * the addon is built without it (capabilities().diffusion is false), so
 * every load rejects with ENGINE_UNAVAILABLE, saying how to get the engine.
 */
import { GenaiError } from "../errors";
import { native } from "../native";
import type { DiffusionEngine, DiffusionLoadOptions, EngineModel } from "./engine";

export const ENGINE_HOWTO =
  "genai-native was built without stable-diffusion.cpp: run `git submodule update --init deps/stable-diffusion.cpp` in the package's source, then `npm run build:native`";

export function nativeDiffusionEngine(): DiffusionEngine {
  let available = false;
  try {
    available = native().capabilities.diffusion === true;
  } catch {
    available = false;
  }
  return {
    available,
    unavailableReason: available ? undefined : ENGINE_HOWTO,
    async load(_options: DiffusionLoadOptions): Promise<EngineModel> {
      if (!available) throw new GenaiError("ENGINE_UNAVAILABLE", ENGINE_HOWTO);
      throw new GenaiError("ENGINE_UNAVAILABLE", "this addon reports a diffusion engine that this version of the TypeScript layer cannot drive");
    },
  };
}
