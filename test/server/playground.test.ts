// The playground page in a real browser: Debian's chromium (headless, driven by
// puppeteer-core; nothing downloaded) loads it from the server, sends a chat
// message and sees the reply stream in, generates images with the
// DiffusionEngine test double behind the server and sees the grid, and reads
// the memory ledger. Screenshots go to build/test-output/.
import fs from "node:fs";
import path from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Orchestrator } from "../../lib/orchestrator/orchestrator";
import { createServer, type GenaiServer } from "../../lib/server/index";
import { CHATML_TEMPLATE } from "../../lib/tools/llama/shape";
import { FakeModel, fakeEngine } from "../fakes/diffusion-engine";
import { storiesPath } from "../helpers";

// CI installs Debian's chromium (.ci/run); GENAI_NATIVE_CHROMIUM names another build
const CHROMIUM = process.env.GENAI_NATIVE_CHROMIUM ?? "/usr/bin/chromium";
const OUT = path.resolve(__dirname, "..", "..", "build", "test-output");

describe("the playground page in chromium", () => {
  let server: GenaiServer;
  let url: string;
  let browser: Browser;
  const orchestrator = new Orchestrator();

  beforeAll(async () => {
    expect(fs.existsSync(CHROMIUM), `${CHROMIUM} (apt-get install chromium)`).toBe(true);
    fs.mkdirSync(OUT, { recursive: true });
    server = await createServer({
      port: 0,
      apiKey: "play",
      orchestrator,
      // a long context: an unstopped reply (the page sends no max_tokens) runs for seconds
      models: [{ path: await storiesPath(), chatTemplate: CHATML_TEMPLATE, context: { contextSize: 8192, threads: 1 } }],
      imageModel: { load: { model: "fake.gguf" }, engine: fakeEngine(new FakeModel(3)) },
    });
    url = (await server.start()).url;
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    orchestrator.dispose();
  });

  it("chat streams a reply; images show progress and the grid; the ledger lists the devices", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url, { waitUntil: "load" });
    // the key is typed into the page (the API refuses calls without it)
    await page.type("#key", "play");
    await page.$eval("#key", (el) => el.dispatchEvent(new Event("change"))); // reloads the model list with the key
    await page.waitForFunction(() => (document.getElementById("model") as HTMLSelectElement).options.length > 0);
    expect(await page.$eval("#model", (el) => (el as HTMLSelectElement).value)).toBe("stories260K");

    await page.type("#prompt", "Tell me a story about a dog.");
    await page.click("#send");
    await page.waitForFunction(() => (document.querySelector("#log .assistant")?.textContent ?? "").length > 20, { timeout: 60_000 });
    await page.click("#stop"); // the page sends no max_tokens: the reply would run to the end of the context
    await page.waitForFunction(() => !(document.getElementById("send") as HTMLButtonElement).disabled, { timeout: 10_000 });
    const reply = await page.$eval("#log .assistant", (el) => el.textContent ?? "");
    console.log(`playground chat reply: ${JSON.stringify(reply.slice(0, 80))}…`);
    expect(reply.length).toBeGreaterThan(20);

    await page.type("#image-prompt", "a lighthouse");
    await page.$eval("#image-n", (el) => ((el as HTMLInputElement).value = "3"));
    await page.select("#image-size", "64x64");
    await page.$eval("#image-steps", (el) => ((el as HTMLInputElement).value = "8"));
    // live previews: count the preview images the page shows while sampling runs
    await page.evaluate(() => {
      const w = window as unknown as { previews: number };
      w.previews = 0;
      new MutationObserver((ms) => {
        for (const m of ms) if ((m.target as HTMLElement).className === "preview") w.previews++;
      }).observe(document.getElementById("grid") as HTMLElement, { subtree: true, attributes: true, attributeFilter: ["src"] });
    });
    await page.click("#generate");
    await page.waitForFunction(() => document.getElementById("image-status")?.textContent === "done", { timeout: 60_000 });
    expect(await page.$$eval("#grid img", (imgs) => imgs.filter((i) => i.className !== "preview").length)).toBe(3);
    expect(await page.evaluate(() => (window as unknown as { previews: number }).previews)).toBeGreaterThan(0);
    expect(await page.$eval("#image-status", (el) => el.textContent)).toBe("done");
    expect(await page.$eval("#image-progress", (el) => (el as HTMLProgressElement).value)).toBe(100);
    const sizes = await page.$$eval("#grid img", (imgs) => imgs.map((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]));
    expect(sizes).toEqual([
      [64, 64],
      [64, 64],
      [64, 64],
    ]);

    // the page refreshes the ledger every 2 s: the loaded model shows up with its weights and KV cache
    await page.waitForFunction(() => /stories260K weights/.test(document.getElementById("ledger")?.textContent ?? ""), { timeout: 10_000 });
    expect(await page.$eval("#ledger", (el) => el.textContent ?? "")).toMatch(/stories260K kv/);
    await page.screenshot({ path: path.join(OUT, "playground.png"), fullPage: true });
    expect(fs.statSync(path.join(OUT, "playground.png")).size).toBeGreaterThan(1000);
    expect(errors).toEqual([]);
  });

  it("stop ends a streaming reply: the server's generation ends aborted", async () => {
    const page = await browser.newPage();
    await page.goto(url, { waitUntil: "load" });
    await page.evaluate(() => localStorage.setItem("genai-native-key", "play"));
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => (document.getElementById("model") as HTMLSelectElement).options.length > 0);
    await page.evaluate(() => {
      // a long reply: the page sends no max_tokens, so the model writes until the context is full
      (document.getElementById("prompt") as HTMLTextAreaElement).value = "Once upon a time";
    });
    await page.click("#send");
    await page.waitForFunction(() => (document.querySelector("#log .assistant")?.textContent ?? "").length > 5, { timeout: 60_000 });
    await page.click("#stop");
    await page.waitForFunction(() => !(document.getElementById("send") as HTMLButtonElement).disabled, { timeout: 10_000 });
    expect(await page.$eval("#stop", (el) => (el as HTMLButtonElement).disabled)).toBe(true);
    // the client went away: the server aborted its generation (the job's result says so)
    const deadline = Date.now() + 10_000;
    let last: { status: string; result?: unknown } | undefined;
    while (Date.now() < deadline) {
      last = orchestrator.registry.list({ kind: "llm.chat" }).at(-1);
      if (last && last.status !== "running" && last.status !== "pending") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(last?.status).toBe("done");
    expect((last?.result as { stopReason: string } | undefined)?.stopReason).toBe("aborted");
  });
});
