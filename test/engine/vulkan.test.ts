// The Vulkan backend module against the CPU: the same hidden states (within
// float tolerance) and the same first greedy tokens. Runs
// wherever a Vulkan device is registered; CI's second pass exposes Mesa's
// lavapipe (GGML_VK_VISIBLE_DEVICES=0). Elsewhere the suite is reported as
// skipped, with the reason.
import { describe, expect, it } from "vitest";
import { LlamaModel, initBackends, systemInfo } from "../../lib/index";
import { storiesPath } from "../helpers";

const status = await initBackends();
const vulkan = status.find((s) => s.name === "vulkan")!;
const has = vulkan.state === "loaded";
const title = has
  ? `Vulkan backend (${vulkan.devices!.join(", ")}) vs CPU`
  : `Vulkan backend — SKIPPED: ${vulkan.state}${vulkan.reason ? ` (${vulkan.reason})` : ""}; CI runs it on lavapipe with GGML_VK_VISIBLE_DEVICES=0`;

describe.skipIf(!has)(title, () => {
  it("registers its devices with memory figures", () => {
    const devices = systemInfo().devices.filter((d) => d.backend === "Vulkan");
    expect(devices.map((d) => d.name)).toEqual(vulkan.devices);
    for (const d of devices) expect(d.totalBytes).toBeGreaterThan(0);
  });

  it("hidden states match the CPU's (pooled embeddings, cosine ≥ 0.99) and greedy decoding starts with the same tokens", async () => {
    const stories = await storiesPath();
    const texts = ["Once upon a time", "The little cat and the big dog played in the park.", "Lily was happy."];
    const run = async (device: string) => {
      const m = await LlamaModel.load(stories, { device });
      try {
        const emb = await m.createContext({ contextSize: 256, embeddings: true });
        const vectors = [];
        for (const t of texts) vectors.push(await emb.embed(t));
        const ctx = await m.createContext({ contextSize: 256 });
        const r = await ctx.complete(texts[0], { maxTokens: 8, temperature: 0 });
        return { vectors, tokens: await m.tokenize(r.text, { addSpecial: false }) };
      } finally {
        await m.dispose();
      }
    };
    const cpu = await run("cpu");
    const vk = await run("vulkan");
    for (let i = 0; i < texts.length; i++) {
      const a = cpu.vectors[i],
        b = vk.vectors[i];
      expect(b.length).toBe(a.length);
      let dot = 0;
      for (let j = 0; j < a.length; j++) dot += a[j] * b[j]; // both L2-normalized
      expect(dot).toBeGreaterThan(0.99);
    }
    // a trained model, 8 greedy tokens: before the near-ties that float differences flip later on
    expect(Array.from(vk.tokens)).toEqual(Array.from(cpu.tokens));
  });
});
