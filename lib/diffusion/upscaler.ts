/**
 * Upscaler: stable-diffusion.cpp's ESRGAN (RRDBNet, as in Real-ESRGAN) image
 * upscaler, on a native thread.
 *
 *   const up = await Upscaler.load({ model: "RealESRGAN_x4plus.gguf" });
 *   const big = await up.upscale(image.raw, 4);   // { png, width: 4w, height: 4h }
 *
 * An ESRGAN model has a fixed factor per pass (`scale`: 4 for
 * RealESRGAN_x4plus, 2 for x2 models; sd.cpp reads it from the weights, see
 * its src/model/upscaler/esrgan.hpp). `upscale(image, factor)` runs the model
 * k times for factor = scale^k. Upscales share the process-wide sd.cpp turn
 * with image generations: one runs at a time, in order.
 */
import { GenaiError } from "../errors";
import { native, withCancelToken } from "../binding/load";
import type { Addon, UpscalerHandle } from "../binding/types";
import { initBackends, resolveDevice } from "../system/backends";
import { optInt, optObject, optOneOf, optSignal, options as validOptions, requireString } from "../util/validate";
import { UPSCALE_KEYS, UPSCALER_LOAD_KEYS } from "./keys";
import { MAX_UPSCALED_SIDE, UPSCALER_DEFAULTS } from "./defaults";
import { ENGINE_HOWTO, toRaw } from "./native-engine";
import { encodePng } from "./png";
import { runExclusive } from "./turn";
import type { RawImage, UpscaledImage, UpscaleOptions, UpscalerLoadOptions } from "./types";

function addon(): Addon {
  const a = native();
  if (!a.capabilities.diffusion || typeof a.loadUpscaler !== "function") throw new GenaiError("ENGINE_UNAVAILABLE", ENGINE_HOWTO);
  return a;
}

export class Upscaler implements AsyncDisposable {
  #handle: UpscalerHandle | undefined;
  #running: Promise<unknown> = Promise.resolve();
  private constructor(h: UpscalerHandle) {
    this.#handle = h;
  }

  /**
   * Loads an ESRGAN model on a native thread.
   * @throws GenaiError ENGINE_UNAVAILABLE (built without stable-diffusion.cpp), INVALID_ARGUMENT, MODEL_NOT_FOUND, INVALID_MODEL (not an ESRGAN file), ABORTED
   */
  static async load(options: UpscalerLoadOptions): Promise<Upscaler> {
    const o = validOptions("options", options, UPSCALER_LOAD_KEYS);
    const a = addon();
    const model = requireString("model", o.model);
    const threads = o.threads === undefined ? undefined : optInt("threads", o.threads, 1, 1, 1024);
    const tileSize = optInt("tileSize", o.tileSize, UPSCALER_DEFAULTS.tileSize, 0, 4096);
    const device = resolveDevice(o.device);
    const signal = optSignal("signal", o.signal);
    if (signal?.aborted) throw new GenaiError("ABORTED", "load aborted before it started");
    await initBackends();
    const h = await runExclusive(() => withCancelToken(signal, (t) => a.loadUpscaler!({ model, threads, tileSize, device }, t)));
    return new Upscaler(h);
  }

  #h(): UpscalerHandle {
    if (!this.#handle) throw new GenaiError("DISPOSED", "the upscaler has been disposed");
    return this.#handle;
  }

  /** The model's factor per pass (1, 2 or 4). */
  get scale(): number {
    return this.#h().scale();
  }

  /**
   * Upscales `image` by `factor` (default: the model's `scale`), which must be
   * scale^k for k in 1..4 (e.g. 4 or 16 for an x4 model), with an output side
   * of at most 16384 pixels. RGBA input loses its alpha (ESRGAN is RGB).
   * @throws GenaiError INVALID_ARGUMENT (synchronously checked, the promise rejects), DISPOSED, ABORTED, BACKEND_ERROR
   */
  async upscale(image: RawImage, factor?: number, options: UpscaleOptions = {}): Promise<UpscaledImage> {
    const h = this.#h();
    const o = validOptions("options", options, UPSCALE_KEYS);
    const output = optOneOf("output", o.output, ["png", "raw", "both"] as const, "png");
    const signal = optSignal("signal", o.signal);
    const img = optObject("image", image) as unknown as RawImage;
    if (!(img.data instanceof Uint8Array)) throw new GenaiError("INVALID_ARGUMENT", "image must be { data: Uint8Array, width, height, channels }");
    const width = optInt("image.width", img.width, 0, 1, MAX_UPSCALED_SIDE);
    const height = optInt("image.height", img.height, 0, 1, MAX_UPSCALED_SIDE);
    if (img.channels !== 3 && img.channels !== 4) throw new GenaiError("INVALID_ARGUMENT", `image.channels must be 3 or 4 (got ${String(img.channels)})`);
    if (img.data.length !== width * height * img.channels)
      throw new GenaiError("INVALID_ARGUMENT", `image.data has ${img.data.length} bytes, expected ${width * height * img.channels}`);
    const scale = h.scale();
    const f = factor === undefined ? scale : optInt("factor", factor, scale, 1, MAX_UPSCALED_SIDE);
    let passes = 1;
    while (passes < 4 && scale ** passes < f) passes++;
    if (scale ** passes !== f)
      throw new GenaiError(
        "INVALID_ARGUMENT",
        `factor must be a power of the model's scale ${scale} (${[1, 2, 3, 4]
          .map((k) => scale ** k)
          .filter((v, i, a) => a.indexOf(v) === i)
          .join(", ")}); got ${f}`,
      );
    if (Math.max(width, height) * f > MAX_UPSCALED_SIDE)
      throw new GenaiError("INVALID_ARGUMENT", `the upscaled image would be ${width * f}×${height * f}; at most ${MAX_UPSCALED_SIDE} pixels per side`);
    if (signal?.aborted) throw new GenaiError("ABORTED", "upscale aborted before it started");
    const run = runExclusive(async () => {
      const [out] = await withCancelToken(signal, (t) => h.upscale({ image: { data: img.data, width, height, channels: img.channels }, passes }, t));
      const raw: RawImage = toRaw(out);
      return {
        png: output === "raw" ? undefined : await encodePng(raw),
        raw: output === "png" ? undefined : raw,
        width: raw.width,
        height: raw.height,
      };
    });
    this.#running = run.catch(() => undefined);
    return run;
  }

  /** Waits for a running upscale, then frees the model. Idempotent. */
  async dispose(): Promise<void> {
    const h = this.#handle;
    if (!h) return;
    this.#handle = undefined;
    await this.#running;
    h.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
