/**
 * PNG encoding of raw 8-bit RGB/RGBA pixels (PNG spec, ISO/IEC 15948: IHDR,
 * text chunks, one IDAT of zlib data with filter 0 per row, IEND; CRC-32 per
 * chunk). Text goes in tEXt (Latin-1) or, for other characters, iTXt (UTF-8,
 * uncompressed): PNG spec 11.3.4.
 * Compression runs on the libuv pool (zlib.deflate), not the JS thread.
 */
import { promisify } from "node:util";
import zlib from "node:zlib";
import type { RawImage } from "./engine";

const deflate = promisify(zlib.deflate);
const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  data.copy(out, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  return out;
}

/** One text chunk: tEXt when keyword and text are Latin-1, else iTXt (UTF-8). */
function textChunk(keyword: string, text: string): Buffer {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: Latin-1 is U+0000–U+00FF
  const latin1 = /^[\u0000-\u00ff]*$/.test(text);
  if (latin1) return chunk("tEXt", Buffer.concat([Buffer.from(keyword, "latin1"), Buffer.from([0]), Buffer.from(text, "latin1")]));
  // keyword \0, compression flag 0, method 0, language tag "" \0, translated keyword "" \0, text
  return chunk("iTXt", Buffer.concat([Buffer.from(keyword, "latin1"), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, "utf8")]));
}

/**
 * @param text keyword → text chunks written before the image data (keywords: 1–79 Latin-1 characters)
 * @returns the PNG file bytes.
 */
export async function encodePng(img: RawImage, text: Readonly<Record<string, string>> = {}): Promise<Buffer> {
  const { width, height, channels } = img;
  const stride = width * channels;
  if (img.data.length !== stride * height)
    throw new RangeError(`pixel data is ${img.data.length} bytes; ${width}×${height}×${channels} needs ${stride * height}`);
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    raw.set(img.data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 4 ? 6 : channels === 3 ? 2 : 0; // colour type: RGBA, RGB or grey
  const texts = Object.entries(text).map(([k, v]) => {
    if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(k)) throw new RangeError(`PNG text keyword ${JSON.stringify(k)}: 1–79 printable Latin-1 characters`);
    return textChunk(k, v);
  });
  return Buffer.concat([SIGNATURE, chunk("IHDR", ihdr), ...texts, chunk("IDAT", await deflate(raw)), chunk("IEND", Buffer.alloc(0))]);
}

/**
 * The generation's parameters as the "parameters" text of AUTOMATIC1111's web
 * UI (which stable-diffusion.cpp's CLI and most image tools read): the prompt,
 * a "Negative prompt:" line when there is one, then "Key: value" pairs.
 */
/** The hires upscalers by AUTOMATIC1111's names (those sd.cpp logs). */
const A1111_UPSCALER: Readonly<Record<string, string>> = {
  latent: "Latent",
  "latent-nearest": "Latent (nearest)",
  "latent-nearest-exact": "Latent (nearest-exact)",
  "latent-antialiased": "Latent (antialiased)",
  "latent-bicubic": "Latent (bicubic)",
  "latent-bicubic-antialiased": "Latent (bicubic antialiased)",
  lanczos: "Lanczos",
  nearest: "Nearest",
  model: "ESRGAN",
};

export function parametersText(p: {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  sampler: string;
  scheduler: string;
  cfgScale: number;
  guidance?: number;
  seed: number;
  width: number;
  height: number;
  model?: string;
  strength?: number;
  /** The hires fix: its target size, steps, strength and upscaler; Size is then the first pass's. */
  hires?: { width: number; height: number; steps: number; strength: number; upscaler: string };
}): string {
  const pairs: [string, string | number][] = [
    ["Steps", p.steps],
    ["Sampler", p.sampler],
    ["Schedule type", p.scheduler],
    ["CFG scale", p.cfgScale],
    ...(p.guidance !== undefined ? ([["Distilled CFG Scale", p.guidance]] as [string, number][]) : []),
    ["Seed", p.seed],
    ["Size", `${p.width}x${p.height}`],
    ...(p.model ? ([["Model", p.model]] as [string, string][]) : []),
    ...(p.strength !== undefined || p.hires ? ([["Denoising strength", p.strength ?? p.hires?.strength]] as [string, number][]) : []),
    ...(p.hires
      ? ([
          ["Hires resize", `${p.hires.width}x${p.hires.height}`],
          ["Hires steps", p.hires.steps],
          ["Hires upscaler", A1111_UPSCALER[p.hires.upscaler] ?? p.hires.upscaler],
        ] as [string, string | number][])
      : []),
    ["Version", "genai-native"],
  ];
  const neg = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : "";
  return `${p.prompt}${neg}\n${pairs.map(([k, v]) => `${k}: ${v}`).join(", ")}`;
}
