/**
 * The stable-diffusion.cpp engine inside genai_native.node
 * (native/diffusion/). Builds without deps/stable-diffusion.cpp have no such
 * engine: capabilities().diffusion is false and every load rejects with
 * ENGINE_UNAVAILABLE, saying how to get it.
 */
import fs from "node:fs";
import { GenaiError, wrapErrors } from "../errors";
import { native, withCancelToken, type NativeAddon } from "../native";
import { deviceFor, resolveDevice } from "../system/backends";
import type { DiffusionEngine, DiffusionLoadOptions, EngineEvent, EngineModel, RawImage } from "./engine";

export const ENGINE_HOWTO =
  "genai-native was built without stable-diffusion.cpp: run `git submodule update --init deps/stable-diffusion.cpp` in the package's source, then `npm run build:native`";

const toRaw = (i: { data: Uint8Array; width: number; height: number; channels: number }): RawImage => ({
  data: new Uint8Array(i.data.buffer, i.data.byteOffset, i.data.byteLength),
  width: i.width,
  height: i.height,
  channels: i.channels as RawImage["channels"],
});

async function load(addon: NativeAddon, options: DiffusionLoadOptions, onProgress: (f: number) => void, signal?: AbortSignal): Promise<EngineModel> {
  const { model, diffusionModel, vae, clipL, clipG, t5xxl, taesd, weightType, threads, flashAttention, vaeTiling, keepClipOnCpu, keepVaeOnCpu, offloadParamsToCpu } = options;
  const device = resolveDevice(options.device);
  const where = await deviceFor(device); // registers the GPU backends first
  const h = await withCancelToken(signal, (cancel) =>
    addon.loadDiffusionModel!({ model, diffusionModel, vae, clipL, clipG, t5xxl, taesd, weightType, threads, flashAttention, vaeTiling, keepClipOnCpu, keepVaeOnCpu, offloadParamsToCpu, device }, onProgress, cancel),
  );
  const info = h.info();
  const files = [model, diffusionModel, vae, clipL, clipG, t5xxl, taesd].filter((p): p is string => !!p);
  const bytes = files.reduce((s, p) => s + fs.statSync(p).size, 0);
  return {
    samplers: info.samplers,
    schedulers: info.schedulers,
    memoryBytes: { [where]: bytes }, // the files' bytes, on the device sd.cpp computes on
    async generate(params, onEvent, cancelToken) {
      const token = new addon.CancelToken();
      cancelToken.onCancel((mode) => {
        token.cancel();
        h.cancel(mode);
      });
      const imgs = await wrapErrors(() =>
        h.generate({ ...params }, (e) => {
          if (e.type === "preview") onEvent({ ...(e as unknown as EngineEvent & { type: "preview" }), image: toRaw(e.image as RawImage) });
          else onEvent(e as unknown as EngineEvent);
        }, token),
      );
      return imgs.map(toRaw);
    },
    dispose() {
      h.dispose();
    },
  };
}

export function nativeDiffusionEngine(): DiffusionEngine {
  let addon: NativeAddon | undefined;
  try {
    addon = native();
  } catch {
    addon = undefined;
  }
  const available = addon?.capabilities.diffusion === true && typeof addon.loadDiffusionModel === "function";
  return {
    available,
    unavailableReason: available ? undefined : ENGINE_HOWTO,
    async load(options, onProgress, signal) {
      if (!available || !addon) throw new GenaiError("ENGINE_UNAVAILABLE", ENGINE_HOWTO);
      return load(addon, options, onProgress, signal);
    },
    async deviceFor(options) {
      if (!available) throw new GenaiError("ENGINE_UNAVAILABLE", ENGINE_HOWTO);
      return deviceFor(options.device);
    },
  };
}
