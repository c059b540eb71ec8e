/**
 * The stable-diffusion.cpp engine inside genai_native.node
 * (native/diffusion/). Builds without deps/stable-diffusion.cpp have no such
 * engine: capabilities().diffusion is false and every load rejects with
 * ENGINE_UNAVAILABLE, saying how to get it.
 */
import fs from "node:fs";
import { GenaiError } from "../errors";
import { native, withCancelToken } from "../binding/load";
import type { Addon, DiffusionLoadParams, NativeImage } from "../binding/types";
import { deviceFor, resolveDevice } from "../system/backends";
import { DIFFUSION_FILE_OPTIONS, DIFFUSION_LOAD_DEFAULTS } from "./defaults";
import type { DiffusionEngine, EngineEvent, EngineModel } from "./engine";
import type { DiffusionLoadOptions, RawImage } from "./types";

export const ENGINE_HOWTO =
  "genai-native was built without stable-diffusion.cpp: run `git submodule update --init deps/stable-diffusion.cpp` in the package's source, then `npm run build:native`";

/** A native image's bytes as a RawImage (no copy). */
export const toRaw = (i: NativeImage): RawImage => ({
  data: new Uint8Array(i.data.buffer, i.data.byteOffset, i.data.byteLength),
  width: i.width,
  height: i.height,
  channels: i.channels as RawImage["channels"],
});

/** Load options (validated by DiffusionModel.load; not checked here) → the addon's complete parameters, every field filled. */
export function loadParams(o: DiffusionLoadOptions, device: string): DiffusionLoadParams {
  const d = DIFFUSION_LOAD_DEFAULTS;
  return {
    model: o.model ?? "",
    diffusionModel: o.diffusionModel ?? "",
    vae: o.vae ?? "",
    clipL: o.clipL ?? "",
    clipG: o.clipG ?? "",
    t5xxl: o.t5xxl ?? "",
    llm: o.llm ?? "",
    llmVision: o.llmVision ?? "",
    clipVision: o.clipVision ?? "",
    controlNet: o.controlNet ?? "",
    ipAdapter: o.ipAdapter ?? "",
    photoMaker: o.photoMaker ?? "",
    taesd: o.taesd ?? "",
    taesdPreviewOnly: o.taesdPreviewOnly ?? false,
    weightType: o.weightType ?? "",
    threads: o.threads,
    flashAttention: o.flashAttention ?? d.flashAttention,
    vaeTiling: o.vaeTiling ?? d.vaeTiling,
    keepClipOnCpu: o.keepClipOnCpu ?? d.keepClipOnCpu,
    keepVaeOnCpu: o.keepVaeOnCpu ?? d.keepVaeOnCpu,
    offloadParamsToCpu: o.offloadParamsToCpu ?? d.offloadParamsToCpu,
    device,
  };
}

async function load(addon: Addon, options: DiffusionLoadOptions, onProgress: (f: number) => void, signal?: AbortSignal): Promise<EngineModel> {
  const device = resolveDevice(options.device);
  const where = await deviceFor(device); // registers the GPU backends first
  const h = await withCancelToken(signal, (cancel) => addon.loadDiffusionModel!(loadParams(options, device), onProgress, cancel));
  const info = h.info();
  const files = DIFFUSION_FILE_OPTIONS.map((k) => options[k]).filter((p): p is string => !!p);
  const bytes = files.reduce((s, p) => s + fs.statSync(p).size, 0);
  return {
    samplers: info.samplers,
    schedulers: info.schedulers,
    controlNet: info.controlNet,
    ...(info.photoMaker !== 0 && { photoMaker: info.photoMaker }),
    ipAdapter: info.ipAdapter,
    taesd: info.taesd,
    reads: info.reads,
    defaultSampler: info.defaultSampler,
    defaultSchedulers: info.defaultSchedulers,
    memoryBytes: { [where]: bytes }, // the files' bytes, on the device sd.cpp computes on
    async generate(params, onEvent, cancelToken) {
      const token = new addon.CancelToken();
      cancelToken.onCancel((mode) => {
        token.cancel();
        h.cancel(mode);
      });
      const imgs = await h.generate(
        { ...params },
        (e) => {
          if (e.type === "preview") onEvent({ ...(e as unknown as EngineEvent & { type: "preview" }), image: toRaw(e.image as NativeImage) });
          else onEvent(e as unknown as EngineEvent);
        },
        token,
      );
      return imgs.map(toRaw);
    },
    dispose() {
      h.dispose();
    },
  };
}

export function nativeDiffusionEngine(): DiffusionEngine {
  let addon: Addon | undefined;
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
