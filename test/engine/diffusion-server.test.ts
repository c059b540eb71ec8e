// The server's image job API with the real stable-diffusion.cpp engine behind
// it (test/server/images.test.ts drives the same API with the engine's test
// double): POST → poll → done, the PNGs equal to the library's own images for
// the same seeds; DELETE mid-run; a chat answered while a background batch
// runs. A random-weight SD1 checkpoint ("tiny" preset) at 64×64.
//
// In `npm run test:diffusion`. Without deps/stable-diffusion.cpp the suite is
// reported as skipped, with the reason in its name.
import path from "node:path";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { capabilities } from "../../lib/index";
import { DiffusionModel } from "../../lib/diffusion/index";
import { ENGINE_HOWTO } from "../../lib/diffusion/native-engine";
import { createServer, type GenaiServer } from "../../lib/server/index";
import { generateRandomSd15Model } from "../../lib/tools";
import { CHATML_TEMPLATE } from "../../lib/tools/llama/shape";
import { storiesPath, tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "serve: the image job API on the real engine (random-weight SD1 model)"
  : `serve: the image job API on the real engine — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface JobView {
  id: string;
  status: string;
  progress: { stage: string; step: number; steps: number; imageIndex: number; imageCount: number; percent: number } | null;
  result: { images: { b64_json: string; seed: number; width: number; height: number }[] } | null;
  error: { code: string; message: string } | null;
}

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let server: GenaiServer;
  let url: string;
  const post = (body: unknown) =>
    fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const get = async (id: string) => (await (await fetch(`${url}/v1/images/generations/${id}`)).json()) as JobView;
  const until = async (id: string, done: (v: JobView) => boolean, ms = 120_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const v = await get(id);
      if (done(v)) return v;
      await sleep(10);
    }
    throw new Error(`job ${id} did not get there in ${ms} ms`);
  };

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-serve-");
    modelFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    server = await createServer({
      port: 0,
      models: [{ path: await storiesPath(), chatTemplate: CHATML_TEMPLATE, context: { contextSize: 256 } }],
      imageModel: { load: { model: modelFile, threads: THREADS } },
    });
    url = (await server.start()).url;
  });
  afterAll(async () => {
    await server?.stop();
    tmp?.cleanup();
  });

  it("POST → poll → done: 2 PNGs with seeds s, s+1, pixel-equal to the library's images for those seeds", async () => {
    const r = await post({ prompt: "a lighthouse at dusk", n: 2, size: "64x64", steps: 2, cfg_scale: 7, sampler: "euler", seed: 1234 });
    expect(r.status).toBe(202);
    const { id } = (await r.json()) as JobView;
    const done = await until(id, (v) => v.status === "done" || v.status === "error");
    expect(done.status, JSON.stringify(done.error)).toBe("done");
    expect(done.progress).toMatchObject({ percent: 100, imageCount: 2 });
    const served = done.result!.images;
    expect(served.map((i) => i.seed)).toEqual([1234, 1235]);

    // the same generation through the library, in this process, after the server's
    const sd = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    try {
      const own = await sd.generate({
        prompt: "a lighthouse at dusk",
        width: 64,
        height: 64,
        steps: 2,
        cfgScale: 7,
        sampler: "euler",
        seed: 1234,
        count: 2,
        output: "raw",
      }).done;
      for (let i = 0; i < 2; i++) {
        const png = PNG.sync.read(Buffer.from(served[i].b64_json, "base64"));
        expect([png.width, png.height]).toEqual([64, 64]);
        const raw = own[i].raw!;
        const rgb = new Uint8Array(64 * 64 * 3);
        for (let p = 0; p < 64 * 64; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = png.data[p * 4 + c];
        expect(raw.channels).toBe(3);
        expect(Buffer.from(rgb).equals(Buffer.from(raw.data)), `image ${i}`).toBe(true);
      }
      // two seeds, two different images
      expect(served[0].b64_json).not.toBe(served[1].b64_json);
    } finally {
      await sd.dispose();
    }
  });

  it("DELETE mid-run cancels the job: 200 cancelled, the record stays cancelled, the next job runs", async () => {
    const { id } = (await (await post({ prompt: "a cat", n: 4, size: "64x64", steps: 40, seed: 9 })).json()) as JobView;
    await until(id, (v) => v.progress !== null && v.progress.stage === "diffusion" && v.progress.step >= 1);
    const t0 = Date.now();
    const del = await fetch(`${url}/v1/images/generations/${id}`, { method: "DELETE" });
    expect(del.status).toBe(200);
    expect(((await del.json()) as JobView).status).toBe("cancelled");
    expect((await get(id)).status).toBe("cancelled");
    // the engine is free again: a small job goes through
    const next = (await (await post({ prompt: "a tree", size: "64x64", steps: 2, seed: 3 })).json()) as JobView;
    const done = await until(next.id, (v) => v.status === "done" || v.status === "error");
    expect(done.status, JSON.stringify(done.error)).toBe("done");
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect((await get(id)).status).toBe("cancelled");
  });

  it("a chat request is answered between two images of a background batch, and the batch then finishes with its seeds", async () => {
    const { id } = (await (await post({ prompt: "a harbour", n: 3, size: "64x64", steps: 12, seed: 100 })).json()) as JobView;
    await until(id, (v) => v.progress !== null && v.progress.stage === "diffusion");
    const chat = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8, temperature: 0 }),
    });
    const body = await chat.text();
    expect(chat.status, body).toBe(200);
    const reply = JSON.parse(body) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(reply.usage.completion_tokens).toBeGreaterThan(0);
    // the chat ran between two images of the batch, not after the whole batch
    expect((await get(id)).status).toBe("running");
    const done = await until(id, (v) => v.status === "done" || v.status === "error");
    expect(done.status, JSON.stringify(done.error)).toBe("done");
    expect(done.result!.images.map((i) => i.seed)).toEqual([100, 101, 102]);
  });
});
