/**
 * Images in chat messages (vision models through llama.cpp's libmtmd).
 *
 * A message's `content` may be an array of parts: `{ type: "text", text }` and
 * `{ type: "image", image }`. For the chat template each image becomes libmtmd's
 * media marker ({@link MEDIA_MARKER}) in the message text, the text parts joined
 * as they are (as llama-mtmd-cli puts its markers before the prompt: no separator);
 * the images go to the addon in order, decoded and preprocessed there on a worker
 * thread (stb_image: PNG, JPEG, BMP, GIF), never on the JS thread.
 */
import fs from "node:fs/promises";
import type { GeneratedImage, RawImage } from "../diffusion/types";
import { checkRawImage } from "../diffusion/params";
import { GenaiError } from "../errors";

/** libmtmd's default media marker (mtmd_default_marker() in tools/mtmd/mtmd.cpp). */
export const MEDIA_MARKER = "<__media__>";

/**
 * An image for a chat message: encoded file bytes (PNG, JPEG, BMP, GIF), a file
 * path, raw pixels ({@link RawImage}: 3 or 4 channels; alpha is dropped), or an
 * image job's {@link GeneratedImage} (its `png`, else its `raw` pixels).
 */
export type ChatImage = Uint8Array | string | RawImage | GeneratedImage;

/** One part of a message's content. */
export type ChatContentPart = { type: "text"; text: string } | { type: "image"; image: ChatImage };

/** What the addon takes: encoded bytes, or raw RGB pixels. */
export type NativeImage = Uint8Array | { width: number; height: number; rgb: Uint8Array };

const MAX_SIDE = 16384; // pixels (the addon's limit)

/**
 * A message content (a string, or parts) as template text with one marker per
 * image, and the images in order. @throws GenaiError INVALID_ARGUMENT naming the part
 */
export function contentText(content: unknown, name: string, images: ChatImage[]): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw new GenaiError("INVALID_ARGUMENT", `${name}.content must be a string or an array of { type: "text" | "image" } parts`);
  let text = "";
  content.forEach((part: unknown, i) => {
    const pn = `${name}.content[${i}]`;
    if (typeof part !== "object" || part === null) throw new GenaiError("INVALID_ARGUMENT", `${pn} must be { type, ... }`);
    const p = part as Record<string, unknown>;
    const keys = Object.keys(p);
    if (p.type === "text") {
      const extra = keys.find((k) => k !== "type" && k !== "text");
      if (extra) throw new GenaiError("INVALID_ARGUMENT", `${pn}.${extra} is not a text part's field`);
      if (typeof p.text !== "string") throw new GenaiError("INVALID_ARGUMENT", `${pn}.text must be a string`);
      text += p.text;
    } else if (p.type === "image") {
      const extra = keys.find((k) => k !== "type" && k !== "image");
      if (extra) throw new GenaiError("INVALID_ARGUMENT", `${pn}.${extra} is not an image part's field`);
      checkImage(p.image, `${pn}.image`);
      images.push(p.image as ChatImage);
      text += MEDIA_MARKER;
    } else {
      throw new GenaiError("INVALID_ARGUMENT", `${pn}.type must be "text" or "image"`);
    }
  });
  return text;
}

/** The shape checks that need no I/O. @throws GenaiError INVALID_ARGUMENT */
function checkImage(v: unknown, name: string): void {
  if (v instanceof Uint8Array) {
    if (v.byteLength === 0) throw new GenaiError("INVALID_ARGUMENT", `${name} is empty`);
    return;
  }
  if (typeof v === "string") {
    if (v.length === 0) throw new GenaiError("INVALID_ARGUMENT", `${name} must be a non-empty path`);
    return;
  }
  if (typeof v !== "object" || v === null)
    throw new GenaiError(
      "INVALID_ARGUMENT",
      `${name} must be image bytes (Uint8Array), a path, raw pixels { data, width, height, channels } or a GeneratedImage`,
    );
  const o = v as Partial<GeneratedImage & RawImage>;
  if (o.png instanceof Uint8Array || (o.raw !== undefined && typeof o.raw === "object")) return;
  for (const k of ["width", "height"] as const)
    if (!Number.isInteger(o[k]) || (o[k] as number) < 1 || (o[k] as number) > MAX_SIDE)
      throw new GenaiError("INVALID_ARGUMENT", `${name}.${k} must be an integer in [1, ${MAX_SIDE}]`);
  checkRawImage(name, o, [3, 4]);
}

/** Images as the addon takes them: files read, RGBA made RGB. @throws GenaiError INVALID_ARGUMENT (a file that cannot be read) */
export async function nativeImages(images: readonly ChatImage[]): Promise<NativeImage[]> {
  return Promise.all(
    images.map(async (img, i): Promise<NativeImage> => {
      if (img instanceof Uint8Array) return img;
      if (typeof img === "string") {
        try {
          return await fs.readFile(img);
        } catch (e) {
          throw new GenaiError("INVALID_ARGUMENT", `image ${i}: cannot read ${img}: ${(e as Error).message}`);
        }
      }
      const g = img as Partial<GeneratedImage>;
      if (g.png instanceof Uint8Array) return g.png;
      const raw = (g.raw ?? img) as RawImage;
      checkImage(raw, `image ${i}`);
      if (raw.channels === 3) return { width: raw.width, height: raw.height, rgb: raw.data };
      const rgb = new Uint8Array(raw.width * raw.height * 3);
      for (let p = 0, q = 0; q < rgb.length; p += 4, q += 3) {
        rgb[q] = raw.data[p];
        rgb[q + 1] = raw.data[p + 1];
        rgb[q + 2] = raw.data[p + 2];
      }
      return { width: raw.width, height: raw.height, rgb };
    }),
  );
}
