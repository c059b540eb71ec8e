/**
 * genai-native serve [--host 127.0.0.1] [--port 8080] [--model PATH|name ...] [--mmproj PATH ...] [--image-model PATH] [--api-key KEY]
 *                    [--context-size N (per request slot)] [--parallel N (request slots)] [--threads N]
 *                    [--flash-attention auto|on|off] [--chat-template FILE] [--cors ORIGIN ...]
 * --flash-attention: the contexts' flashAttention (default "auto": llama.cpp's choice per device, as llama-server's -fa).
 * --mmproj: a vision projector for the --model of the same position (images in chat as image_url data URLs);
 * an hf: model whose repo has one (pulled with it) gets it without --mmproj.
 * The OpenAI-compatible server (lib/server) until SIGINT/SIGTERM, which stop
 * accepting requests, abort the running ones and exit.
 */
import fs from "node:fs";
import { parseArgs } from "node:util";
import { GenaiError } from "../errors";
import { resolveModel } from "../models/resolver";
import { ModelStore } from "../models/store";
import { createServer } from "../server/index";

export async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8080" },
      model: { type: "string", multiple: true },
      mmproj: { type: "string", multiple: true },
      "image-model": { type: "string" },
      "api-key": { type: "string" },
      "context-size": { type: "string" },
      parallel: { type: "string" },
      threads: { type: "string" },
      "flash-attention": { type: "string" },
      "chat-template": { type: "string" },
      cors: { type: "string", multiple: true },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port)) throw new GenaiError("INVALID_ARGUMENT", `--port must be an integer (got ${values.port})`);
  const contextSize = values["context-size"] === undefined ? undefined : Number(values["context-size"]);
  if (contextSize !== undefined && !Number.isInteger(contextSize)) throw new GenaiError("INVALID_ARGUMENT", "--context-size must be an integer");
  const chatTemplate = values["chat-template"] === undefined ? undefined : fs.readFileSync(values["chat-template"], "utf8");
  const int = (name: "parallel" | "threads") => {
    const v = values[name];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new GenaiError("INVALID_ARGUMENT", `--${name} must be a positive integer (got ${v})`);
    return Number(v);
  };
  const fa = values["flash-attention"];
  if (fa !== undefined && fa !== "auto" && fa !== "on" && fa !== "off")
    throw new GenaiError("INVALID_ARGUMENT", `--flash-attention must be auto, on or off (got ${fa})`);
  const parallel = int("parallel");
  const threads = int("threads");
  const refs = values.model?.length ? values.model : [undefined];
  const mmprojs = values.mmproj ?? [];
  if (mmprojs.length > refs.length)
    throw new GenaiError("INVALID_ARGUMENT", `${mmprojs.length} --mmproj for ${refs.length} --model: one projector per model, in order`);
  const models = [];
  for (const [i, ref] of refs.entries()) {
    const path = await resolveModel(ref, { download: true });
    const context = {
      ...(contextSize ? { contextSize } : {}),
      ...(threads ? { threads, batchThreads: threads } : {}),
      ...(fa ? { flashAttention: fa as "auto" | "on" | "off" } : {}),
    };
    // a model pulled from a repo with a projector brings it (ModelStore: StoredModel.mmproj)
    const mmproj = mmprojs[i] ?? (ref?.startsWith("hf:") ? new ModelStore().find(ref)?.mmproj?.path : undefined);
    const load = mmproj ? { load: { mmproj } } : {};
    models.push({ path, context, ...load, ...(parallel ? { parallel } : {}), ...(chatTemplate ? { chatTemplate } : {}) });
  }
  const server = await createServer({
    host: values.host,
    port,
    models,
    apiKey: values["api-key"] ?? process.env.GENAI_NATIVE_API_KEY,
    corsOrigins: values.cors,
  });
  const { url } = await server.start();
  process.stderr.write(`genai-native serve: ${url} (${models.map((m) => m.path).join(", ")})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.stderr.write("genai-native serve: stopping\n");
      server.stop().then(resolve, resolve);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
