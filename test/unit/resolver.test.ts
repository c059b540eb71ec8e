import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL, downloadModel, resolveModel, type KnownModel } from "../../lib/models/resolver";
import { tempDir } from "../helpers";

describe("model resolver", () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeAll(() => {
    tmp = tempDir();
  });
  afterAll(() => tmp.cleanup());

  it("finds the default model in GENAI_NATIVE_MODELS and it matches the pinned sha256", async () => {
    const p = await resolveModel(undefined, { download: false });
    expect(path.basename(p)).toBe(DEFAULT_MODEL.file);
    const digest = createHash("sha256").update(fs.readFileSync(p)).digest("hex");
    expect(digest).toBe(DEFAULT_MODEL.sha256);
    expect(fs.statSync(p).size).toBe(DEFAULT_MODEL.bytes);
  });

  it("explicit path wins; a missing explicit path is MODEL_NOT_FOUND", async () => {
    const p = await resolveModel(undefined, { download: false });
    expect(await resolveModel(p)).toBe(path.resolve(p));
    await expect(resolveModel(path.join(tmp.dir, "missing.gguf"))).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
  });

  it("falls back to the cache dir, then fails without download", async () => {
    const cache = path.join(tmp.dir, "cache");
    fs.mkdirSync(cache);
    await expect(resolveModel(undefined, { modelsDir: path.join(tmp.dir, "none"), cacheDir: cache, download: false })).rejects.toMatchObject({
      code: "MODEL_NOT_FOUND",
    });
    fs.copyFileSync(await resolveModel(undefined, { download: false }), path.join(cache, DEFAULT_MODEL.file));
    expect(await resolveModel(undefined, { modelsDir: path.join(tmp.dir, "none"), cacheDir: cache, download: false })).toBe(
      path.join(cache, DEFAULT_MODEL.file),
    );
  });

  describe("download (from a loopback server)", () => {
    let server: http.Server;
    let body: Buffer;
    let requests: { range?: string }[] = [];
    let base = "";
    beforeAll(async () => {
      body = fs.readFileSync(await resolveModel(undefined, { download: false }));
      server = http.createServer((req, res) => {
        requests.push({ range: req.headers.range });
        const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
        if (req.url === "/broken") {
          // sends half the file, then drops the connection
          res.writeHead(200, { "content-length": String(body.length) });
          res.write(body.subarray(0, body.length >> 1), () => res.destroy());
          return;
        }
        if (m) {
          const from = Number(m[1]);
          res.writeHead(206, { "content-length": String(body.length - from), "content-range": `bytes ${from}-${body.length - 1}/${body.length}` });
          res.end(body.subarray(from));
        } else {
          res.writeHead(200, { "content-length": String(body.length) });
          res.end(body);
        }
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it("downloads, verifies sha256 and resumes a partial file", async () => {
      const dir = path.join(tmp.dir, "dl");
      const model: KnownModel = { ...DEFAULT_MODEL, url: `${base}/model` };
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, model.file + ".partial"), body.subarray(0, 1000));
      requests = [];
      const progress: number[] = [];
      const p = await downloadModel(model, dir, { onDownloadProgress: (n) => progress.push(n) });
      expect(requests[0].range).toBe("bytes=1000-");
      expect(fs.readFileSync(p).equals(body)).toBe(true);
      expect(progress[progress.length - 1]).toBe(body.length);
      expect(fs.existsSync(p + ".partial")).toBe(false);
    });

    it("a broken transfer leaves a partial file that the next call resumes", async () => {
      const dir = path.join(tmp.dir, "dl-broken");
      const model: KnownModel = { ...DEFAULT_MODEL, url: `${base}/broken` };
      await expect(downloadModel(model, dir)).rejects.toMatchObject({ code: "BACKEND_ERROR", message: expect.stringMatching(/resumes/) });
      const partial = path.join(dir, model.file + ".partial");
      expect(fs.statSync(partial).size).toBeGreaterThan(0);
      requests = [];
      const p = await downloadModel({ ...model, url: `${base}/model` }, dir);
      expect(requests[0].range).toMatch(/^bytes=\d+-$/);
      expect(fs.readFileSync(p).equals(body)).toBe(true);
    });

    it("a sha256 mismatch is INVALID_MODEL and removes the file", async () => {
      const dir = path.join(tmp.dir, "dl-bad");
      const model: KnownModel = { ...DEFAULT_MODEL, url: `${base}/model`, sha256: "0".repeat(64) };
      await expect(downloadModel(model, dir)).rejects.toMatchObject({ code: "INVALID_MODEL" });
      expect(fs.existsSync(path.join(dir, model.file))).toBe(false);
      expect(fs.existsSync(path.join(dir, model.file + ".partial"))).toBe(false);
    });
  });
});
