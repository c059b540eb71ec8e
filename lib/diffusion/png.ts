/**
 * PNG encoding of raw 8-bit RGB/RGBA pixels (PNG spec, ISO/IEC 15948: IHDR,
 * one IDAT of zlib data with filter 0 per row, IEND; CRC-32 per chunk).
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

/** @returns the PNG file bytes. */
export async function encodePng(img: RawImage): Promise<Buffer> {
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
  return Buffer.concat([SIGNATURE, chunk("IHDR", ihdr), chunk("IDAT", await deflate(raw)), chunk("IEND", Buffer.alloc(0))]);
}
