// The server's image job API (POST → poll → done; DELETE; progress events;
// 404/409; TTL expiry) with the test double of the DiffusionEngine interface
// behind it, and the typed answer when no image model is served.
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodePng } from "../../lib/diffusion/index";
import { Orchestrator } from "../../lib/orchestrator/orchestrator";
import { createServer, type GenaiServer } from "../../lib/server/index";
import { FakeModel, fakeEngine } from "../fakes/diffusion-engine";
import { storiesPath } from "../helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface JobView {
  id: string;
  status: string;
  createdAt: number;
  progress: { stage: string; step: number; steps: number; imageIndex: number; imageCount: number; percent: number; etaMs?: number } | null;
  result: { images: { b64_json: string; seed: number; width: number; height: number }[] } | null;
  error: { code: string; message: string } | null;
}

describe("serve: the image job API", () => {
  let server: GenaiServer;
  let url: string;
  let orchestrator: Orchestrator;
  const fake = new FakeModel(4);
  const post = (body: unknown) =>
    fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const get = async (id: string) => (await (await fetch(`${url}/v1/images/generations/${id}`)).json()) as JobView;
  const until = async (id: string, done: (v: JobView) => boolean) => {
    for (let i = 0; i < 2000; i++) {
      const v = await get(id);
      if (done(v)) return v;
      await sleep(5);
    }
    throw new Error(`job ${id} did not get there`);
  };

  beforeAll(async () => {
    // a short TTL so that expiry can be seen (the seed's default is 5 minutes, swept every minute)
    orchestrator = new Orchestrator({ registry: { ttlMs: 400, sweepIntervalMs: 100 } });
    server = await createServer({
      port: 0,
      orchestrator,
      models: [{ path: await storiesPath(), context: { contextSize: 256 } }],
      imageModel: { load: { model: "fake.gguf" }, engine: fakeEngine(fake) },
    });
    url = (await server.start()).url;
  });
  afterAll(async () => {
    await server?.stop();
    orchestrator?.dispose();
  });

  it("POST answers 202 at once; polling shows live progress, then the images with incremented seeds", async () => {
    const r = await post({ prompt: "a lighthouse", n: 3, size: "64x64", steps: 6, seed: 42 });
    expect(r.status).toBe(202);
    const { id, status, createdAt } = (await r.json()) as JobView;
    expect(typeof id).toBe("string");
    expect(["pending", "running"]).toContain(status);
    expect(createdAt).toBeGreaterThan(0);
    const running = await until(id, (v) => v.progress !== null && v.progress.step > 0);
    expect(running.status).toBe("running");
    expect(running.progress).toMatchObject({ stage: "diffusion", steps: 6, imageCount: 3 });
    expect(running.progress!.percent).toBeGreaterThan(0);
    const done = await until(id, (v) => v.status === "done");
    expect(done.result!.images.map((i) => i.seed)).toEqual([42, 43, 44]);
    for (const img of done.result!.images) {
      const png = Buffer.from(img.b64_json, "base64");
      expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
      expect([img.width, img.height]).toEqual([64, 64]);
    }
    expect(done.progress!.percent).toBe(100);
    // finished: DELETE is a conflict
    const del = await fetch(`${url}/v1/images/generations/${id}`, { method: "DELETE" });
    expect(del.status).toBe(409);
    expect(((await del.json()) as { error: { code: string } }).error.code).toBe("CONFLICT");
  });

  it("DELETE mid-run cancels; the events stream ends with the final record", async () => {
    const { id } = (await (await post({ prompt: "a cat", n: 5, size: "64x64", steps: 50 })).json()) as JobView;
    const events: string[] = [];
    const streamed = (async () => {
      const res = await fetch(`${url}/v1/images/generations/${id}/events`);
      const text = await res.text();
      for (const m of text.matchAll(/^event: (\w+)$/gm)) events.push(m[1]);
      return text;
    })();
    await until(id, (v) => v.progress !== null && v.progress.step >= 2);
    const del = await fetch(`${url}/v1/images/generations/${id}`, { method: "DELETE" });
    expect(del.status).toBe(200);
    expect(((await del.json()) as JobView).status).toBe("cancelled");
    const text = await streamed;
    expect(events[0]).toBe("status");
    expect(events).toContain("progress");
    expect(events.at(-1)).toBe("end");
    expect(text).toContain('"status":"cancelled"');
  });

  it("a background batch gives way between two images to an interactive image job, then finishes with its own seeds", async () => {
    const before = fake.calls.length;
    const { id } = (await (await post({ prompt: "a harbour", n: 4, size: "64x64", steps: 30, seed: 100 })).json()) as JobView;
    const streamed = (async () => (await fetch(`${url}/v1/images/generations/${id}/events`)).text())();
    await until(id, (v) => v.progress !== null && v.progress.stage === "diffusion" && v.progress.imageIndex === 0);
    const r = await post({ prompt: "a quick sketch", n: 1, size: "64x64", steps: 3, seed: 7, priority: "interactive" });
    const quickId = ((await r.json()) as JobView).id;
    const quick = await until(quickId, (v) => v.status === "done");
    expect(quick.result!.images.map((i) => i.seed)).toEqual([7]);
    const done = await until(id, (v) => v.status === "done");
    expect(done.result!.images.map((i) => i.seed)).toEqual([100, 101, 102, 103]);
    expect(done.progress).toMatchObject({ imageCount: 4, percent: 100 });
    // the engine saw: the batch, cut after image k (k ≥ 1), the interactive job, the batch's remaining images
    const calls = fake.calls.slice(before).map((c) => `${c.seed}×${c.count}`);
    expect(calls).toHaveLength(3);
    expect(calls.slice(0, 2)).toEqual(["100×4", "7×1"]);
    const k = Number(calls[2].split("×")[0]) - 100;
    expect(k).toBeGreaterThanOrEqual(1);
    expect(calls[2]).toBe(`${100 + k}×${4 - k}`);
    // and its progress said so while it waited
    const text = await streamed;
    const waiting = [...text.matchAll(/^event: progress\ndata: (.*)$/gm)]
      .map((m) => JSON.parse(m[1]) as { stage: string; imageIndex: number })
      .find((p) => p.stage === "preempted");
    expect(waiting).toMatchObject({ stage: "preempted", imageIndex: k, imageCount: 4 });
    expect(text).toMatch(/event: end\ndata: .*"status":"done"/);
  });

  it("preview: the events stream carries the sampling's preview images as PNGs", async () => {
    const { id } = (await (await post({ prompt: "a boat", n: 2, size: "64x64", steps: 20, preview: { interval_steps: 5 } })).json()) as JobView;
    const text = await (await fetch(`${url}/v1/images/generations/${id}/events`)).text();
    const previews = [...text.matchAll(/^event: preview\ndata: (.*)$/gm)].map(
      (m) => JSON.parse(m[1]) as { image_index: number; step: number; b64_png: string },
    );
    expect(previews.length).toBeGreaterThan(0);
    for (const p of previews) {
      expect(p.step % 5).toBe(0);
      expect([0, 1]).toContain(p.image_index);
      const png = PNG.sync.read(Buffer.from(p.b64_png, "base64"));
      expect(png.width).toBeGreaterThan(0);
    }
    expect(text).toMatch(/event: end\ndata: .*"status":"done"/);
    const bad = await post({ prompt: "a boat", preview: { every: 2 } });
    expect(bad.status).toBe(400);
  });

  it("img2img: init_image and mask (base64 PNG) and strength reach the engine as pixels; the size comes from the image", async () => {
    const rgb = { data: new Uint8Array(128 * 64 * 3).fill(200), width: 128, height: 64, channels: 3 as const };
    const grey = {
      data: new Uint8Array(128 * 64 * 3).map((_, i) => (i % 3 === 0 && i < 128 * 32 * 3 ? 255 : 0)),
      width: 128,
      height: 64,
      channels: 3 as const,
    };
    const b64 = async (img: typeof rgb) => (await encodePng(img)).toString("base64");
    const calls = fake.calls.length;
    const r = await post({ prompt: "repaint the top", init_image: `data:image/png;base64,${await b64(rgb)}`, mask: await b64(grey), strength: 0.6, steps: 2 });
    expect(r.status).toBe(202);
    const { id } = (await r.json()) as JobView;
    const done = await until(id, (v) => v.status === "done" || v.status === "error");
    expect(done.status, JSON.stringify(done.error)).toBe("done");
    const p = fake.calls[calls];
    expect([p.width, p.height, p.strength]).toEqual([128, 64, 0.6]);
    expect(p.initImage).toMatchObject({ width: 128, height: 64, channels: 3 });
    expect(p.initImage!.data[0]).toBe(200);
    expect(p.mask).toMatchObject({ width: 128, height: 64, channels: 1 });
    expect([p.mask!.data[0], p.mask!.data[128 * 63]]).toEqual([255, 0]);
    const bad = await post({ prompt: "x", init_image: "not a png" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe("init_image");
    expect((await post({ prompt: "x", mask: await b64(grey) })).status).toBe(400);
  });

  it("unknown ids are 404; bad requests are 400 naming the field; finished records expire after the TTL", async () => {
    expect((await fetch(`${url}/v1/images/generations/nope`)).status).toBe(404);
    const bad = await post({ prompt: "x", n: 6 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/n/);
    const unknown = await post({ prompt: "x", quality: "hd" });
    expect(((await unknown.json()) as { error: { message: string } }).error.message).toMatch(/unknown field quality/);
    const { id } = (await (await post({ prompt: "a tree", size: "64x64", steps: 2 })).json()) as JobView;
    await until(id, (v) => v.status === "done");
    await sleep(700);
    expect((await fetch(`${url}/v1/images/generations/${id}`)).status).toBe(404);
  });
});

describe("serve: no image model", () => {
  it("the image endpoints answer 501 ENGINE_UNAVAILABLE", async () => {
    const server = await createServer({ port: 0, models: [{ path: await storiesPath(), context: { contextSize: 256 } }] });
    const { url } = await server.start();
    try {
      const r = await fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"prompt":"x"}' });
      expect(r.status).toBe(501);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe("ENGINE_UNAVAILABLE");
      expect((await fetch(`${url}/v1/images/generations/x`)).status).toBe(501);
    } finally {
      await server.stop();
    }
  });
});
