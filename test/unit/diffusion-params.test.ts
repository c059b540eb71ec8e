// The image API's option checks and defaults for the stable-diffusion.cpp
// features beyond txt2img (lib/diffusion/params.ts): LoRAs, flowShift,
// guidance, ControlNet and reference images, and the model-part load options;
// plus the random SD1 LoRA generator's tensor names. No engine needed (the
// engine-backed checks: test/engine/diffusion-features.test.ts).
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DiffusionModel, type RawImage, resolveGenerateParams } from "../../lib/diffusion/index";
import { hasPhotoMakerTrigger } from "../../lib/diffusion/params";
import { DIFFUSION_FILE_OPTIONS, IMAGE_DEFAULTS, MAX_REF_IMAGES } from "../../lib/diffusion/defaults";
import { generateRandomSdLora, sdLoraTensors } from "../../lib/tools";
import { fakeEngine } from "../fakes/diffusion-engine";
import { tempDir } from "../helpers";

const model = { samplers: ["euler", "euler_a"], schedulers: ["discrete"], controlNet: false };
const withControlNet = { ...model, controlNet: true };
const img = (w: number, h: number, channels: 1 | 3 | 4 = 3): RawImage => ({ data: new Uint8Array(w * h * channels), width: w, height: h, channels });
const base = { prompt: "x", width: 64, height: 64 };
const invalid = expect.objectContaining({ code: "INVALID_ARGUMENT" });

describe("image generation options: LoRAs, flowShift, guidance, ControlNet, reference images", () => {
  const tmp = tempDir("genai-native-sd-params-");
  const lora = path.join(tmp.dir, "l.safetensors");
  fs.writeFileSync(lora, "x");

  it("defaults: no LoRAs, no reference images, no control image, flowShift and guidance left to sd.cpp", () => {
    const p = resolveGenerateParams(base, model);
    expect(p).toMatchObject({ loras: [], refImages: [] });
    for (const k of ["controlImage", "controlStrength", "flowShift", "guidance"] as const) expect(p[k]).toBeUndefined();
  });

  it("guidance, flowShift and refImages on a model whose denoiser does not read them (EngineModel.reads) are INVALID_ARGUMENT naming them", () => {
    const opts = { guidance: { guidance: 3 }, flowShift: { flowShift: 2 }, refImages: { refImages: [img(64, 64)] } };
    const unread = (key: string) => expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(new RegExp(`^${key}: `)) });
    for (const key of ["guidance", "flowShift", "refImages"] as const) {
      const reads = { guidance: true, flowShift: true, refImages: true, [key]: false };
      expect(() => resolveGenerateParams({ ...base, ...opts[key] }, { ...model, reads })).toThrow(unread(key));
      // the other two are read
      const others = Object.fromEntries(
        Object.entries(opts)
          .filter(([k]) => k !== key)
          .flatMap(([, v]) => Object.entries(v)),
      );
      expect(resolveGenerateParams({ ...base, ...others }, { ...model, reads })).toMatchObject(others);
      // absent reads: not known, nothing refused
      expect(resolveGenerateParams({ ...base, ...opts[key] }, model)).toMatchObject(opts[key]);
    }
    // an empty refImages list is no reference image; bad values are refused before the question of reading them
    const none = { guidance: false, flowShift: false, refImages: false };
    expect(resolveGenerateParams({ ...base, refImages: [] }, { ...model, reads: none }).refImages).toEqual([]);
    expect(() => resolveGenerateParams({ ...base, guidance: -1 }, { ...model, reads: none })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.not.stringMatching(/^guidance: /) }),
    );
    expect(() => resolveGenerateParams({ ...base, flowShift: 0 }, { ...model, reads: none })).toThrow(/greater than 0/);
  });

  it("sampler and scheduler default to the model's (its family's, from sd.cpp), else IMAGE_DEFAULTS'; given ones win", () => {
    expect(resolveGenerateParams(base, model)).toMatchObject({ sampler: IMAGE_DEFAULTS.sampler, scheduler: IMAGE_DEFAULTS.scheduler });
    const flux2 = {
      ...model,
      samplers: ["euler", "euler_a", "lcm"],
      schedulers: ["discrete", "flux2", "lcm"],
      defaultSampler: "euler",
      defaultSchedulers: { euler: "flux2", euler_a: "flux2", lcm: "lcm" },
    };
    expect(resolveGenerateParams(base, flux2)).toMatchObject({ sampler: "euler", scheduler: "flux2" });
    expect(resolveGenerateParams({ ...base, sampler: "lcm" }, flux2)).toMatchObject({ sampler: "lcm", scheduler: "lcm" });
    expect(resolveGenerateParams({ ...base, scheduler: "discrete" }, flux2)).toMatchObject({ sampler: "euler", scheduler: "discrete" });
    expect(() => resolveGenerateParams(base, { ...flux2, defaultSampler: "nope" })).toThrow(invalid); // checked like a given one
  });

  it("LoRAs: scale defaults to 1; multiplier is scale's former name; the file must exist", () => {
    expect(resolveGenerateParams({ ...base, loras: [{ path: lora }] }, model).loras).toEqual([{ path: lora, scale: IMAGE_DEFAULTS.loraScale }]);
    expect(IMAGE_DEFAULTS.loraScale).toBe(1);
    expect(resolveGenerateParams({ ...base, loras: [{ path: lora, scale: 0 }] }, model).loras).toEqual([{ path: lora, scale: 0 }]);
    expect(resolveGenerateParams({ ...base, loras: [{ path: lora, multiplier: -0.5 }] }, model).loras).toEqual([{ path: lora, scale: -0.5 }]);
    expect(() => resolveGenerateParams({ ...base, loras: [{ path: path.join(tmp.dir, "none.safetensors") }] }, model)).toThrow(
      expect.objectContaining({ code: "MODEL_NOT_FOUND", message: expect.stringContaining("none.safetensors") }),
    );
    const bad: unknown[] = [
      { path: lora, scale: 10.5 },
      { path: lora, scale: Number.NaN },
      { path: lora, scale: "1" },
      { path: lora, scale: 1, multiplier: 1 },
      { path: lora, weight: 1 },
      { path: 5 },
      {},
      "l.safetensors",
    ];
    for (const l of bad) expect(() => resolveGenerateParams({ ...base, loras: [l as never] }, model), JSON.stringify(l)).toThrow(invalid);
    expect(() => resolveGenerateParams({ ...base, loras: { path: lora } as never }, model)).toThrow(invalid);
  });

  it("flowShift: finite and > 0 (up to 100); guidance: finite and ≥ 0 (up to 100)", () => {
    expect(resolveGenerateParams({ ...base, flowShift: 3, guidance: 0 }, model)).toMatchObject({ flowShift: 3, guidance: 0 });
    expect(resolveGenerateParams({ ...base, flowShift: 0.01 }, model).flowShift).toBe(0.01);
    for (const flowShift of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 100.5, "3"])
      expect(() => resolveGenerateParams({ ...base, flowShift: flowShift as number }, model), String(flowShift)).toThrow(invalid);
    for (const guidance of [-0.1, Number.NaN, Number.NEGATIVE_INFINITY, 101])
      expect(() => resolveGenerateParams({ ...base, guidance }, model), String(guidance)).toThrow(invalid);
  });

  it("controlImage needs a ControlNet, the job's size and 3 or 4 channels; controlStrength defaults to 0.9, in [0, 1]", () => {
    expect(() => resolveGenerateParams({ ...base, controlImage: img(64, 64) }, model)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/controlNet/) }),
    );
    const p = resolveGenerateParams({ ...base, controlImage: img(64, 64, 4) }, withControlNet);
    expect(p.controlStrength).toBe(0.9);
    expect(p.controlImage?.channels).toBe(4);
    expect(resolveGenerateParams({ ...base, controlImage: img(64, 64), controlStrength: 0 }, withControlNet).controlStrength).toBe(0);
    // without a control image the strength is checked, not passed on
    expect(resolveGenerateParams({ ...base, controlStrength: 0.5 }, model).controlStrength).toBeUndefined();
    const bad: object[] = [
      { controlImage: img(128, 64) },
      { controlImage: img(64, 64, 1) },
      { controlImage: { ...img(64, 64), data: new Uint8Array(3) } },
      { controlImage: "edges.png" },
      { controlImage: img(64, 64), controlStrength: 1.1 },
      { controlImage: img(64, 64), controlStrength: -0.1 },
      { controlStrength: Number.NaN },
    ];
    for (const o of bad) expect(() => resolveGenerateParams({ ...base, ...o }, withControlNet), JSON.stringify(o)).toThrow(invalid);
  });

  it("refImages: any size with sides in [64, 4096] and an aspect ratio up to 8:1, 3 or 4 channels, at most MAX_REF_IMAGES", () => {
    const refs = [img(64, 512), img(300, 200, 4), img(4096, 4096)];
    expect(resolveGenerateParams({ ...base, refImages: refs }, model).refImages).toEqual(refs);
    expect(resolveGenerateParams({ ...base, refImages: Array.from({ length: MAX_REF_IMAGES }, () => img(64, 64)) }, model).refImages).toHaveLength(16);
    const bad: unknown[] = [
      [img(64, 520)], // 8.1:1
      [img(63, 64)],
      [img(64, 4097)],
      [img(64, 64, 1)],
      [{ ...img(64, 64), data: new Uint8Array(10) }],
      [null],
      Array.from({ length: MAX_REF_IMAGES + 1 }, () => img(64, 64)),
      img(64, 64),
    ];
    for (const refImages of bad) expect(() => resolveGenerateParams({ ...base, refImages: refImages as never }, model)).toThrow(invalid);
  });

  it("photoMaker: identity images, the trigger word after a class word, the style strength, v2's embeddings file", () => {
    const v1 = { ...model, photoMaker: 1 as const };
    const v2 = { ...model, photoMaker: 2 as const };
    const pm = { idImages: [img(64, 96), img(128, 128, 4)] };
    const prompt = "a photo of a man img, smiling";
    const p = resolveGenerateParams({ ...base, prompt, photoMaker: pm }, v1);
    expect(p.photoMaker).toEqual({ idImages: pm.idImages, styleStrength: IMAGE_DEFAULTS.photoMakerStyleStrength });
    expect(IMAGE_DEFAULTS.photoMakerStyleStrength).toBe(20); // sd_img_gen_params_init()'s
    expect(resolveGenerateParams({ ...base, prompt, photoMaker: { ...pm, styleStrength: 0 } }, v1).photoMaker?.styleStrength).toBe(0);
    expect(resolveGenerateParams(base, v1).photoMaker).toBeUndefined();
    // the trigger as a CLIP token of its own, after another token (the class word)
    for (const ok of ["man img", "A Woman IMG.", "(man img:1.2)", "man,img", "man img img"]) expect(hasPhotoMakerTrigger(ok), ok).toBe(true);
    for (const no of ["img of a man", "  img", "a man imgs", "a man with an image", "an imgur man", "a man éimg", ""])
      expect(hasPhotoMakerTrigger(no), no).toBe(false);
    const embeds = path.join(tmp.dir, "id_embeds.bin");
    fs.writeFileSync(embeds, "x");
    expect(resolveGenerateParams({ ...base, prompt, photoMaker: { ...pm, idEmbeddings: embeds } }, v2).photoMaker?.idEmbeddings).toBe(embeds);
    const bad: [object, object, RegExp][] = [
      [{ ...base, prompt, photoMaker: pm }, model, /needs a model loaded with photoMaker weights/],
      [{ ...base, prompt: "a photo of a man", photoMaker: pm }, v1, /trigger word "img" after its class word/],
      [{ ...base, prompt: "img man", photoMaker: pm }, v1, /trigger word "img"/],
      [{ ...base, prompt, photoMaker: { idImages: [] } }, v1, /array of 1\.\.16 images/],
      [{ ...base, prompt, photoMaker: {} }, v1, /idImages/],
      [{ ...base, prompt, photoMaker: { idImages: Array.from({ length: 17 }, () => img(64, 64)) } }, v1, /at most 16/],
      [{ ...base, prompt, photoMaker: { idImages: [img(32, 64)] } }, v1, /idImages\[0\] is 32×64; sides must be in \[64, 4096\]/],
      [{ ...base, prompt, photoMaker: { idImages: [img(64, 64, 1)] } }, v1, /idImages\[0\]\.channels/],
      [{ ...base, prompt, photoMaker: { ...pm, styleStrength: 101 } }, v1, /styleStrength/],
      [{ ...base, prompt, photoMaker: { ...pm, idEmbeddings: embeds } }, v1, /used only by PhotoMaker v2/],
      [{ ...base, prompt, photoMaker: pm }, v2, /PhotoMaker v2 needs photoMaker.idEmbeddings/],
      [{ ...base, prompt, photoMaker: { ...pm, trigger: "img" } }, v1, /trigger/],
    ];
    for (const [o, m, message] of bad)
      expect(() => resolveGenerateParams(o as never, m), JSON.stringify(o).slice(0, 120)).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(message) }),
      );
    expect(() => resolveGenerateParams({ ...base, prompt, photoMaker: { ...pm, idEmbeddings: path.join(tmp.dir, "none.bin") } }, v2)).toThrow(
      expect.objectContaining({ code: "MODEL_NOT_FOUND" }),
    );
  });

  it("ipAdapter: an image prompt (sides 64..4096, 3 or 4 channels) and a strength 0..5 (default 1, sd.cpp's), on a model with an IP-Adapter", () => {
    const withIp = { ...model, ipAdapter: true };
    const image = img(96, 64, 4);
    expect(resolveGenerateParams({ ...base, ipAdapter: { image } }, withIp).ipAdapter).toEqual({ image, strength: 1 });
    expect(IMAGE_DEFAULTS.ipAdapterStrength).toBe(1);
    expect(resolveGenerateParams({ ...base, ipAdapter: { image, strength: 0 } }, withIp).ipAdapter?.strength).toBe(0);
    expect(resolveGenerateParams(base, withIp).ipAdapter).toBeUndefined();
    expect(() => resolveGenerateParams({ ...base, ipAdapter: { image } }, model)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/needs a model loaded with ipAdapter/) }),
    );
    for (const bad of [{ image, strength: 5.5 }, { image, strength: -1 }, { image: img(64, 32) }, { image: img(64, 64, 1) }, { image, scale: 1 }, {}, null])
      expect(() => resolveGenerateParams({ ...base, ipAdapter: bad as never }, withIp), JSON.stringify(bad)?.slice(-30)).toThrow(invalid);
  });

  it('preview: "proj" by default; "tae" needs a model with a TAESD and "vae" one without (sd.cpp makes every preview with the TAESD when loaded)', () => {
    const withTaesd = { ...model, taesd: true };
    expect(resolveGenerateParams({ ...base, preview: {} }, model).preview).toEqual({ mode: "proj", intervalSteps: 1 });
    expect(resolveGenerateParams({ ...base, preview: { mode: "vae", intervalSteps: 3 } }, model).preview).toEqual({ mode: "vae", intervalSteps: 3 });
    expect(resolveGenerateParams({ ...base, preview: { mode: "tae" } }, withTaesd).preview?.mode).toBe("tae");
    expect(resolveGenerateParams({ ...base, preview: { mode: "proj" } }, withTaesd).preview?.mode).toBe("proj");
    expect(() => resolveGenerateParams({ ...base, preview: { mode: "tae" } }, model)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/needs a model loaded with taesd/) }),
    );
    expect(() => resolveGenerateParams({ ...base, preview: { mode: "vae" } }, withTaesd)).toThrow(invalid);
    expect(() => resolveGenerateParams({ ...base, preview: { mode: "TAE" } as never }, withTaesd)).toThrow(invalid);
  });

  it("unknown keys are named", () => {
    expect(() => resolveGenerateParams({ ...base, controlnetImage: img(64, 64) } as never, model)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/controlnetImage/) }),
    );
  });
});

describe("step cache options (cache)", () => {
  const cache = (c: unknown) => resolveGenerateParams({ ...base, cache: c } as never, model).cache;
  it("the mode is required, one of sd-cli's six; the fields given pass on, sd.cpp's defaults for the rest", () => {
    expect(resolveGenerateParams(base, model).cache).toBeUndefined();
    expect(cache({ mode: "ucache" })).toEqual({ mode: "ucache" });
    expect(cache({ mode: "ucache", threshold: 1.5, start: 0, end: 1 })).toEqual({ mode: "ucache", threshold: 1.5, start: 0, end: 1 });
    expect(cache({ mode: "cache-dit", threshold: 0.2, warmup: 4 })).toEqual({ mode: "cache-dit", threshold: 0.2, warmup: 4 });
    expect(cache({ mode: "spectrum", warmup: 0 })).toEqual({ mode: "spectrum", warmup: 0 });
    expect(() => cache({})).toThrow(expect.objectContaining({ message: expect.stringMatching(/cache.mode is required/) }));
    expect(() => cache({ mode: "fastcache" })).toThrow(invalid);
    expect(() => cache({ mode: "ucache", every: 2 })).toThrow(expect.objectContaining({ message: expect.stringMatching(/every/) }));
  });
  it("ranges, start < end (with the defaults 0.15 / 0.95), and fields the mode does not read are INVALID_ARGUMENT", () => {
    expect(() => cache({ mode: "ucache", threshold: -0.1 })).toThrow(invalid);
    expect(() => cache({ mode: "ucache", threshold: Number.POSITIVE_INFINITY })).toThrow(invalid);
    expect(() => cache({ mode: "ucache", start: 0.96 })).toThrow(invalid);
    expect(() => cache({ mode: "ucache", end: 0.1 })).toThrow(invalid);
    expect(() => cache({ mode: "easycache", start: 0.5, end: 0.5 })).toThrow(invalid);
    expect(() => cache({ mode: "dbcache", warmup: 1.5 })).toThrow(invalid);
    expect(() => cache({ mode: "ucache", warmup: 1 })).toThrow(expect.objectContaining({ message: "cache.warmup is not used by cache mode ucache" }));
    expect(() => cache({ mode: "spectrum", threshold: 1 })).toThrow(expect.objectContaining({ message: "cache.threshold is not used by cache mode spectrum" }));
    expect(() => cache({ mode: "taylorseer", threshold: 1 })).toThrow(invalid);
    expect(() => cache({ mode: "dbcache", end: 0.5 })).toThrow(expect.objectContaining({ message: "cache.end is not used by cache mode dbcache" }));
  });
});

describe("model parts at load", () => {
  it("llm, llmVision, clipVision, controlNet and photoMaker are file options, passed to the engine; other types are INVALID_ARGUMENT", async () => {
    for (const k of ["llm", "llmVision", "clipVision", "controlNet", "photoMaker"] as const) expect(DIFFUSION_FILE_OPTIONS).toContain(k);
    const eng = fakeEngine();
    let seen: object | undefined;
    const spy = {
      ...eng,
      load: async (o: object) => {
        seen = o;
        return eng.model;
      },
    };
    const parts = { diffusionModel: "flux2-klein.gguf", llm: "qwen3-4b.gguf", vae: "flux2-vae.safetensors" };
    await DiffusionModel.load(parts, spy);
    expect(seen).toMatchObject(parts);
    for (const k of ["llm", "llmVision", "clipVision", "controlNet", "photoMaker"])
      await expect(DiffusionModel.load({ model: "m", [k]: 5 } as never, eng), k).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    // taesdPreviewOnly: a boolean, and only with a taesd
    await expect(DiffusionModel.load({ model: "m", taesdPreviewOnly: true }, eng)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: /needs taesd/ });
    await expect(DiffusionModel.load({ model: "m", taesd: "t.gguf", taesdPreviewOnly: 1 } as never, eng)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await DiffusionModel.load({ model: "m", taesd: "t.gguf", taesdPreviewOnly: true }, spy);
    expect(seen).toMatchObject({ taesd: "t.gguf", taesdPreviewOnly: true });
    await expect(DiffusionModel.load({ model: "m", controlnet: "c.gguf" } as never, eng)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/controlnet/),
    });
  });
});

describe("random SD1 LoRA (lib/tools/sd/lora.ts)", () => {
  it("kohya names of the first level's transformer blocks, lora_down [rank, in] and lora_up [out, rank]; a valid safetensors file", async () => {
    const t = sdLoraTensors({ rank: 4 });
    expect(t.map((x) => `${x.name} ${x.shape.join("x")}`)).toEqual([
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight 4x768",
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight 32x4",
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v.lora_down.weight 4x768",
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v.lora_up.weight 32x4",
      "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_k.lora_down.weight 4x768",
      "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_k.lora_up.weight 32x4",
      "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_v.lora_down.weight 4x768",
      "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_v.lora_up.weight 32x4",
    ]);
    expect(sdLoraTensors({ targets: ["attn1_to_q"], preset: "sd15" })[1].shape).toEqual([320, 4]);
    expect(() => sdLoraTensors({ rank: 0 })).toThrow(RangeError);
    const tmp = tempDir("genai-native-sd-lora-");
    try {
      const file = path.join(tmp.dir, "l.safetensors");
      const r = await generateRandomSdLora(file, { seed: 2 });
      const buf = fs.readFileSync(file);
      expect(buf.length).toBe(r.bytes);
      const n = Number(buf.readBigUInt64LE(0));
      expect((8 + n) % 8).toBe(0);
      const header = JSON.parse(buf.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: [number, number] }>;
      const ends = Object.entries(header)
        .filter(([k]) => k !== "__metadata__")
        .map(([, v]) => v.data_offsets[1]);
      expect(8 + n + Math.max(...ends)).toBe(buf.length);
      // deterministic for a seed
      expect(fs.readFileSync((await generateRandomSdLora(path.join(tmp.dir, "m.safetensors"), { seed: 2 })).path).equals(buf)).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });
});
