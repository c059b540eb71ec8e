// Model references and the model store against a local hub on 127.0.0.1
// that answers like huggingface.co (the tree API with LFS sha256, resolve/main
// with a redirect and Range support, 401 for a gated repo, a connection
// dropped half-way), serving stories260K and files derived from it.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenaiError } from "../../lib/errors";
import { pickModelFiles, quantOf, type HubFile } from "../../lib/models/hub";
import { ModelStore } from "../../lib/models/store";
import { storiesPath, tempDir } from "../helpers";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("picking a model's files from a repo listing", () => {
  const f = (p: string): HubFile => ({ path: p, size: 1 });
  const repo = [
    f("Qwen3-4B-Q8_0.gguf"),
    f("Qwen3-4B-Q4_K_M.gguf"),
    f("Qwen3-4B-F16-00001-of-00002.gguf"),
    f("Qwen3-4B-F16-00002-of-00002.gguf"),
    f("mmproj-Qwen3-4B-F16.gguf"),
  ];
  it("quant by name (any case), the default when none, shards in order, never the projector", () => {
    expect(quantOf("a/b/Model-IQ4_XS.gguf")).toBe("IQ4_XS");
    expect(pickModelFiles("o/r", repo, { quant: "q8_0" }).files.map((x) => x.path)).toEqual(["Qwen3-4B-Q8_0.gguf"]);
    const def = pickModelFiles("o/r", repo, {});
    expect(def.quant).toBe("Q4_K_M");
    expect(def.mmproj?.path).toBe("mmproj-Qwen3-4B-F16.gguf");
    expect(pickModelFiles("o/r", repo, { quant: "F16" }).files.map((x) => x.path)).toEqual([
      "Qwen3-4B-F16-00001-of-00002.gguf",
      "Qwen3-4B-F16-00002-of-00002.gguf",
    ]);
    expect(pickModelFiles("o/r", repo, { file: "Qwen3-4B-Q8_0.gguf" }).quant).toBe("Q8_0");
    expect(() => pickModelFiles("o/r", repo, { quant: "Q2_K" })).toThrow(/its quants: Q8_0, Q4_K_M, F16/);
    expect(() => pickModelFiles("o/r", [f("x-F16-00001-of-00002.gguf")], {})).toThrow(/shard .* is missing/);
  });
});

describe("the model store against a local hub", () => {
  let tmp: { dir: string; cleanup: () => void };
  let server: http.Server;
  let endpoint: string;
  let stories: Buffer;
  const ranges: string[] = [];
  let dropNext = false;
  // repo → files (path → bytes); "gated/model" needs the token "hf_secret"
  const repos = new Map<string, Map<string, Buffer>>();
  const wrongSha = new Set<string>();

  beforeAll(async () => {
    tmp = tempDir();
    stories = fs.readFileSync(await storiesPath());
    const half = stories.length >> 1;
    repos.set(
      "test/stories-GGUF",
      new Map([
        ["stories260K-Q8_0.gguf", stories],
        ["stories260K-F16.gguf", Buffer.concat([stories, Buffer.from("f16")])],
        ["mmproj-stories260K-F16.gguf", Buffer.from("projector")],
        ["sharded/stories260K-Q4_0-00001-of-00002.gguf", stories.subarray(0, half)],
        ["sharded/stories260K-Q4_0-00002-of-00002.gguf", stories.subarray(half)],
        ["bad-Q2_K.gguf", stories],
      ]),
    );
    // served slowly (16 pieces, 25 ms apart): for the queue and pause tests
    repos.set(
      "test/slow",
      new Map([
        ["slow-Q8_0.gguf", stories],
        ["slow-Q6_K.gguf", Buffer.concat([stories, Buffer.from("6")])],
        ["slow-Q5_K_M.gguf", Buffer.concat([stories, Buffer.from("5")])],
      ]),
    );
    wrongSha.add("bad-Q2_K.gguf");
    repos.set("gated/model", new Map([["model-Q8_0.gguf", stories]]));
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const gatedOk = (repo: string) => repo !== "gated/model" || req.headers.authorization === "Bearer hf_secret";
      let m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/main$/.exec(url.pathname);
      if (m) {
        const files = repos.get(m[1]);
        if (!files) return res.writeHead(404, { "content-type": "application/json" }).end('{"error":"Repository not found"}');
        if (!gatedOk(m[1])) return res.writeHead(401, { "content-type": "application/json" }).end('{"error":"Access to model gated/model is restricted"}');
        const list = [...files].map(([p, b]) => ({
          type: "file",
          path: p,
          size: 134,
          oid: "0".repeat(40),
          lfs: { oid: wrongSha.has(p) ? "f".repeat(64) : sha(b), size: b.length, pointerSize: 134 },
        }));
        return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(list));
      }
      m = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url.pathname);
      if (m) {
        if (!gatedOk(m[1])) return res.writeHead(401).end();
        // the hub redirects LFS files to its CDN
        return res.writeHead(302, { location: `/cdn/${m[1]}/${m[2]}` }).end();
      }
      m = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(url.pathname);
      const body = m ? repos.get(m[1])?.get(decodeURIComponent(m[2])) : undefined;
      if (!body) return res.writeHead(404).end();
      const r = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      ranges.push(req.headers.range ?? "");
      const from = r ? Number(r[1]) : 0;
      if (from >= body.length) return res.writeHead(416).end();
      res.writeHead(r ? 206 : 200, {
        "content-length": String(body.length - from),
        ...(r ? { "content-range": `bytes ${from}-${body.length - 1}/${body.length}` } : {}),
      });
      if (m?.[1] === "test/slow") {
        const rest = body.subarray(from);
        const piece = Math.ceil(rest.length / 16);
        let i = 0;
        const next = () => {
          if (res.destroyed) return;
          if (i * piece >= rest.length) return void res.end();
          res.write(rest.subarray(i * piece, (i + 1) * piece));
          i++;
          setTimeout(next, 25);
        };
        return next();
      }
      if (dropNext) {
        dropNext = false;
        // half of it, then the connection drops
        res.write(body.subarray(from, from + ((body.length - from) >> 1)), () => res.destroy());
        return;
      }
      res.end(body.subarray(from));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    tmp?.cleanup();
  });

  it("pulls by quant, verifies, lists, finds it without the hub, and removes it", async () => {
    const store = new ModelStore(path.join(tmp.dir, "a"));
    const progress: { receivedBytes: number; index: number; count: number }[] = [];
    const m = await store.pull("hf:test/stories-GGUF:q8_0", { endpoint, onProgress: (p) => progress.push(p) });
    expect(m.ref).toBe("hf:test/stories-GGUF:Q8_0");
    expect(fs.readFileSync(m.path).equals(stories)).toBe(true);
    expect(m).toMatchObject({ architecture: "llama", bytes: stories.length });
    expect(m.parameterCount).toBeGreaterThan(200_000);
    expect(progress.filter((p) => p.index === 0).at(-1)?.receivedBytes).toBe(stories.length);
    // the repo's projector comes with it (the second of two files)
    expect(progress.at(-1)).toMatchObject({ index: 1, count: 2, receivedBytes: "projector".length });
    expect(path.basename(m.mmproj?.path ?? "")).toBe("mmproj-stories260K-F16.gguf");
    expect(fs.readFileSync(m.mmproj?.path ?? "", "utf8")).toBe("projector");
    expect(store.list().map((x) => x.ref)).toEqual(["hf:test/stories-GGUF:Q8_0"]);
    ranges.length = 0;
    expect((await store.pull("hf:test/stories-GGUF:Q8_0", { endpoint })).path).toBe(m.path);
    expect(ranges).toEqual([]); // already there: the hub is not asked
    // the default quant, and shards in order
    expect((await store.pull("hf:test/stories-GGUF", { endpoint })).quant).toBe("Q4_0");
    const sharded = store.find("hf:test/stories-GGUF:Q4_0")!;
    expect(sharded.files.map((f) => path.basename(f.path))).toEqual(["stories260K-Q4_0-00001-of-00002.gguf", "stories260K-Q4_0-00002-of-00002.gguf"]);
    expect(Buffer.concat(sharded.files.map((f) => fs.readFileSync(f.path))).equals(stories)).toBe(true);
    expect(sharded.mmproj?.path).toBe(m.mmproj?.path); // one projector for the repo's models
    expect(store.remove("hf:test/stories-GGUF:Q8_0")).toBe(true);
    expect(fs.existsSync(m.path)).toBe(false);
    expect(fs.existsSync(m.mmproj?.path ?? "")).toBe(true); // the Q4_0 model still has it
    expect(store.list().map((x) => x.ref)).toEqual(["hf:test/stories-GGUF:Q4_0"]);
    expect(await store.verify("hf:test/stories-GGUF:Q4_0")).toEqual([]);
  });

  it("inspect: metadata, sizes and the memory estimate before any download", async () => {
    const store = new ModelStore(path.join(tmp.dir, "i"));
    ranges.length = 0;
    const i = await store.inspect("hf:test/stories-GGUF:Q8_0", { endpoint, contextSize: 256 });
    expect(i.ref).toBe("hf:test/stories-GGUF:Q8_0");
    expect(i.bytes).toBe(stories.length);
    expect(i.summary.architecture).toBe("llama");
    expect(i.summary.parameterCount).toBeGreaterThan(200_000);
    expect(i.estimate.weights).toBeGreaterThan(0);
    expect(i.estimate.kv).toBeGreaterThan(0);
    expect(i.fits).toBe(true);
    // only the header was read, in ranges; nothing was written
    expect(ranges.every((r) => /^bytes=\d+-\d+$/.test(r))).toBe(true);
    expect(fs.existsSync(store.dir)).toBe(false);
  });

  it("a connection dropped half-way resumes from the byte it stopped at, also in a new store (a restart)", async () => {
    const dir = path.join(tmp.dir, "b");
    dropNext = true;
    const e = await new ModelStore(dir).pull("hf:test/stories-GGUF:F16", { endpoint }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GenaiError);
    expect((e as GenaiError).message).toMatch(/resumes/);
    const partial = path.join(dir, "hf", "test", "stories-GGUF", "stories260K-F16.gguf.partial");
    const offset = fs.statSync(partial).size;
    expect(offset).toBeGreaterThan(0);
    ranges.length = 0;
    const m = await new ModelStore(dir).pull("hf:test/stories-GGUF:F16", { endpoint });
    console.log(`dropped at ${offset} of ${stories.length + 3} bytes; resumed with Range: ${ranges[0]}`);
    expect(ranges[0]).toBe(`bytes=${offset}-`);
    expect(fs.readFileSync(m.path).equals(Buffer.concat([stories, Buffer.from("f16")]))).toBe(true);
    expect(fs.existsSync(partial)).toBe(false);
  });

  it("checksum mismatch, a gated repo, a missing repo or quant, and an abort are typed errors", async () => {
    const store = new ModelStore(path.join(tmp.dir, "c"));
    await expect(store.pull("hf:test/stories-GGUF:Q2_K", { endpoint })).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/sha256/),
    });
    expect(fs.existsSync(path.join(store.dir, "hf", "test", "stories-GGUF", "bad-Q2_K.gguf.partial"))).toBe(false);
    await expect(store.pull("hf:gated/model", { endpoint })).rejects.toMatchObject({ code: "ACCESS_DENIED", message: expect.stringMatching(/HF_TOKEN/) });
    expect((await store.pull("hf:gated/model", { endpoint, token: "hf_secret" })).quant).toBe("Q8_0");
    await expect(store.pull("hf:test/nothing", { endpoint })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    await expect(store.pull("hf:test/stories-GGUF:Q3_K_S", { endpoint })).rejects.toMatchObject({
      code: "MODEL_NOT_FOUND",
      message: expect.stringMatching(/Q8_0/),
    });
    await expect(store.pull("hf:test/stories-GGUF:Q8_0", { endpoint, signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "ABORTED" });
    // a cancel mid-transfer removes the partial file, unless asked to keep it
    const slow = path.join(store.dir, "hf", "test", "slow", "slow-Q8_0.gguf.partial");
    for (const keep of [false, true]) {
      const ac = new AbortController();
      const p = store.pull("hf:test/slow:Q8_0", { endpoint, signal: ac.signal, keepPartialOnAbort: keep, onProgress: () => ac.abort() });
      await expect(p).rejects.toMatchObject({ code: "ABORTED" });
      expect(fs.existsSync(slow), `keepPartialOnAbort ${keep}`).toBe(keep);
    }
    expect(() => store.remove("not-a-ref")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    await expect(store.pull("hf:bad ref", { endpoint })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("a queue: one download at a time, in priority order; pause keeps the partial file, resume goes on from it; verify", async () => {
    const store = new ModelStore(path.join(tmp.dir, "q"));
    const done: string[] = [];
    const pull = (ref: string, priority: "interactive" | "background") =>
      store.pull(ref, { endpoint, priority }).then((m) => {
        done.push(m.ref);
        return m;
      });
    const first = pull("hf:test/slow:Q8_0", "background");
    await new Promise((r) => setTimeout(r, 50)); // it has started
    const low = pull("hf:test/slow:Q6_K", "background");
    const high = pull("hf:test/slow:Q5_K_M", "interactive");
    await Promise.all([first, low, high]);
    expect(done).toEqual(["hf:test/slow:Q8_0", "hf:test/slow:Q5_K_M", "hf:test/slow:Q6_K"]);
    expect(await store.verify("hf:test/slow:Q8_0")).toEqual([]);
    // a flipped byte is found
    const m = store.find("hf:test/slow:Q8_0")!;
    const bytes = fs.readFileSync(m.path);
    bytes[100] ^= 0xff;
    fs.writeFileSync(m.path, bytes);
    expect(await store.verify("hf:test/slow:Q8_0")).toEqual([m.path]);

    // pause and resume
    store.remove("hf:test/slow:Q6_K");
    const seen: number[] = [];
    const paused = store.pull("hf:test/slow:Q6_K", {
      endpoint,
      onProgress: (p) => {
        seen.push(p.receivedBytes);
        if (seen.length === 3) store.pause("hf:test/slow:Q6_K");
      },
    });
    await new Promise((r) => setTimeout(r, 300));
    const partial = path.join(store.dir, "hf", "test", "slow", "slow-Q6_K.gguf.partial");
    const kept = fs.statSync(partial).size;
    const count = seen.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.length).toBe(count); // nothing arrives while paused
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(stories.length);
    ranges.length = 0;
    store.resume("hf:test/slow:Q6_K");
    const resumed = await paused;
    expect(ranges[0]).toBe(`bytes=${kept}-`);
    expect(fs.readFileSync(resumed.path).equals(Buffer.concat([stories, Buffer.from("6")]))).toBe(true);
  });

  it("the CLI: pull, ls, complete --model hf:… (from the store), rm", async () => {
    const env = { ...process.env, HF_ENDPOINT: endpoint, GENAI_NATIVE_CACHE: path.join(tmp.dir, "cli") };
    // asynchronously: the local hub answers from this process
    const cli = (...args: string[]) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.resolve(__dirname, "..", "..", "dist", "cjs", "cli", "main.js"), ...args],
          { env, timeout: 120_000 },
          (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const inspected = await cli("pull", "--inspect", "hf:test/stories-GGUF:Q8_0");
    expect(inspected.stdout).toMatch(/hf:test\/stories-GGUF:Q8_0: llama, .* fits this machine/);
    const pulled = await cli("pull", "hf:test/stories-GGUF:Q8_0");
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(pulled.stdout).toMatch(/^hf:test\/stories-GGUF:Q8_0 /);
    expect((await cli("ls")).stdout).toMatch(/hf:test\/stories-GGUF:Q8_0/);
    const run = await cli("complete", "--model", "hf:test/stories-GGUF:Q8_0", "--max-tokens", "10", "--temperature", "0", "Once upon a time");
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/there was a little girl/);
    expect((await cli("rm", "hf:test/stories-GGUF:Q8_0")).status).toBe(0);
    expect((await cli("ls")).stdout).toBe("");
  });
});
