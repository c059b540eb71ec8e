/**
 * The image job API (the seed app's, genai-electron): POST
 * /v1/images/generations answers 202 `{ id, status, createdAt }` at once and
 * the job runs as an orchestrator job ("background" priority unless the
 * request asks for more) that gives way between two images of its batch to a
 * job of a higher priority waiting for it (runImageBatch: progress stage
 * "preempted" and status "pending" while it waits, then the rest of the batch
 * with its remaining seeds); GET /v1/images/generations/:id gives its status,
 * live progress (stage, step/steps, image index, percent, ETA) and, when done,
 * (img2img: `init_image` and `mask` as base64 PNG, `strength`)
 * the images as base64 PNG with their seeds; DELETE cancels it (409 once it
 * has finished); GET …/:id/events streams its progress as server-sent
 * events, and with `preview` (true, or { mode, interval_steps }) the sampling's
 * preview images as "preview" events ({ image_index, step, width, height,
 * b64_png }; not kept in the record). Records live in the orchestrator's
 * registry (TTL and bounds there).
 */
import { EventEmitter } from "node:events";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { PNG } from "pngjs";
import { promptTokenBound } from "../diffusion/memory-dit";
import { encodePng } from "../diffusion/png";
import type { GeneratedImage, ImageGenerateOptions, RawImage } from "../diffusion/types";
import { runImageBatch } from "../orchestrator/image-batch";
import type { ManagedDiffusion } from "../orchestrator/managed-diffusion";
import type { Priority } from "../orchestrator/priority";
import type { QueuedJob } from "../orchestrator/queue";
import { errorBody, HttpError } from "./errors";
import type { ServerState } from "./index";
import { imageBody } from "./schemas";
import { EventStream } from "./sse";

interface ImageRequest {
  prompt: string;
  init_image?: string;
  strength?: number;
  mask?: string;
  negative_prompt?: string;
  n?: number;
  size?: string;
  steps?: number;
  cfg_scale?: number;
  sampler?: string;
  scheduler?: string;
  seed?: number;
  priority?: Priority;
  preview?: boolean | { mode?: "proj" | "tae" | "vae"; interval_steps?: number };
}

/** What a finished job's record holds. */
interface ImageResult {
  images: { b64_json: string; seed: number; width: number; height: number }[];
}

const FINISHED = new Set(["done", "error", "cancelled"]);

/**
 * A base64 PNG (or a data: URL of one) as raw pixels: RGB for an init image,
 * one grey channel (the red one) for a mask — white repaints, black keeps.
 * @throws HttpError 400 naming the field
 */
function decodePng(b64: string, field: string, grey: boolean): RawImage {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(b64.replace(/^data:image\/png;base64,/, ""), "base64"));
  } catch (e) {
    throw new HttpError(400, "INVALID_REQUEST", `${field} is not a base64 PNG (${(e as Error).message})`, field);
  }
  const n = png.width * png.height;
  const out = new Uint8Array(n * (grey ? 1 : 3));
  for (let i = 0; i < n; i++) {
    if (grey) out[i] = png.data[i * 4];
    else out.set(png.data.subarray(i * 4, i * 4 + 3), i * 3);
  }
  return { data: out, width: png.width, height: png.height, channels: grey ? 1 : 3 };
}

export function registerImageRoutes(app: FastifyInstance, state: ServerState, image: ManagedDiffusion | undefined): void {
  const live = new Map<string, { job: QueuedJob<ImageResult>; events: EventEmitter }>();
  const registry = state.orchestrator.registry;
  const record = (id: string) => {
    const r = registry.get(id);
    if (r?.kind !== "image") throw new HttpError(404, "NOT_FOUND", `no image job ${id} (finished jobs are kept 5 minutes)`, "id");
    return r;
  };
  const view = (id: string) => {
    const r = record(id);
    return {
      id: r.id,
      status: r.status,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      progress: r.progress ?? null,
      result: r.result ?? null,
      error: r.error ?? null,
    };
  };
  const need = () => {
    if (!image) throw new HttpError(501, "ENGINE_UNAVAILABLE", "this server has no image model (serve --image-model PATH)");
    return image;
  };

  app.post("/v1/images/generations", { schema: { body: imageBody } }, async (req: FastifyRequest, reply: FastifyReply) => {
    const model = need();
    const b = req.body as ImageRequest;
    const init = b.init_image === undefined ? undefined : decodePng(b.init_image, "init_image", false);
    const mask = b.mask === undefined ? undefined : decodePng(b.mask, "mask", true);
    if (mask && !init) throw new HttpError(400, "INVALID_REQUEST", "mask needs an init_image", "mask");
    // without a size, an init image gives it
    const size = /^(\d+)x(\d+)$/.exec(b.size ?? (init ? `${init.width}x${init.height}` : "512x512"));
    if (!size) throw new HttpError(400, "INVALID_REQUEST", `size must be WIDTHxHEIGHT (got ${b.size})`, "size");
    const options: ImageGenerateOptions = { prompt: b.prompt, width: Number(size[1]), height: Number(size[2]), count: b.n ?? 1 };
    if (init) options.initImage = init;
    if (mask) options.mask = mask;
    if (b.strength !== undefined) options.strength = b.strength;
    if (b.negative_prompt !== undefined) options.negativePrompt = b.negative_prompt;
    if (b.steps !== undefined) options.steps = b.steps;
    if (b.cfg_scale !== undefined) options.cfgScale = b.cfg_scale;
    if (b.sampler !== undefined) options.sampler = b.sampler;
    if (b.scheduler !== undefined) options.scheduler = b.scheduler;
    if (b.seed !== undefined) options.seed = b.seed;
    if (b.preview !== undefined && b.preview !== false) {
      const pv = b.preview === true ? {} : b.preview;
      options.preview = { ...(pv.mode ? { mode: pv.mode } : {}), ...(pv.interval_steps ? { intervalSteps: pv.interval_steps } : {}) };
    }
    const events = new EventEmitter();
    const holder: { id?: string } = {};
    const job = state.orchestrator.submit<ImageResult>({
      kind: "image",
      resource: model,
      priority: b.priority ?? "background",
      // the weights and this size's compute buffers (estimateDiffusionMemory; weights only where it has no fit)
      memory: model.imageMemory({
        width: options.width as number,
        height: options.height as number,
        count: options.count,
        initImage: init !== undefined,
        promptTokens: promptTokenBound(options.prompt as string | undefined, options.negativePrompt as string | undefined),
      }),
      run: async (signal, control) => {
        const images: GeneratedImage[] = await runImageBatch(model, options, signal, control, {
          onProgress: (p) => {
            if (holder.id === undefined || registry.get(holder.id) === undefined) return;
            registry.update(holder.id, { progress: p });
            events.emit("progress", p);
          },
          onPreview: (e) => {
            if (events.listenerCount("preview") === 0) return; // nobody watching: no PNG to encode
            encodePng(e.image).then(
              (png) =>
                events.emit("preview", {
                  image_index: e.imageIndex,
                  step: e.step,
                  width: e.image.width,
                  height: e.image.height,
                  b64_png: png.toString("base64"),
                }),
              () => undefined, // a preview that cannot be encoded is skipped
            );
          },
        });
        return { images: images.map((i) => ({ b64_json: i.png?.toString("base64") ?? "", seed: i.seed, width: i.width, height: i.height })) };
      },
    });
    holder.id = job.id;
    live.set(job.id, { job, events });
    // the server's stop() cancels it
    const stopping = new AbortController();
    stopping.signal.addEventListener("abort", () => job.cancel("the server is stopping"));
    state.requests.add(stopping);
    const settle = () => {
      live.delete(job.id);
      state.requests.delete(stopping);
      events.emit("end");
    };
    job.promise.then(settle, settle);
    const r = record(job.id);
    return reply.code(202).send({ id: r.id, status: r.status, createdAt: r.createdAt });
  });

  app.get("/v1/images/generations/:id", async (req: FastifyRequest) => {
    need();
    return view((req.params as { id: string }).id);
  });

  app.delete("/v1/images/generations/:id", async (req: FastifyRequest) => {
    need();
    const { id } = req.params as { id: string };
    const r = record(id);
    const entry = live.get(id);
    if (FINISHED.has(r.status) || !entry) throw new HttpError(409, "CONFLICT", `image job ${id} has already finished (${r.status})`, "id");
    entry.job.cancel("cancelled by DELETE");
    await entry.job.promise.catch(() => undefined);
    return view(id);
  });

  // progress as server-sent events: the record now, each change, and the final record
  app.get("/v1/images/generations/:id/events", async (req: FastifyRequest, reply: FastifyReply) => {
    need();
    const { id } = req.params as { id: string };
    const first = view(id);
    const sse = new EventStream(reply);
    const send = (event: string, data: unknown) => sse.send(data, event);
    const entry = live.get(id);
    if (!entry) {
      send("end", first);
      sse.end();
      return;
    }
    send("status", first);
    const onProgress = (p: unknown) => send("progress", p);
    const onPreview = (p: unknown) => send("preview", p);
    const onEnd = () => {
      entry.events.off("progress", onProgress);
      entry.events.off("preview", onPreview);
      try {
        send("end", view(id));
      } catch (e) {
        send("error", errorBody(e as HttpError));
      }
      sse.end();
    };
    entry.events.on("progress", onProgress);
    entry.events.on("preview", onPreview);
    entry.events.once("end", onEnd);
    reply.raw.on("close", () => {
      entry.events.off("progress", onProgress);
      entry.events.off("preview", onPreview);
      entry.events.off("end", onEnd);
    });
  });
}
