/**
 * `genai-native/server` (a package entry of its own: the main entry never
 * loads fastify), and `genai-native serve`: an OpenAI-compatible HTTP server on
 * loopback (fastify), in the same process as the engines. Every request is a
 * job of the orchestrator (chat at "interactive" priority), so it queues
 * with the app's own work and the memory ledger covers it.
 *
 *   const server = await createServer({ models: [{ path: "model.gguf" }] });
 *   const { url } = await server.start();   // http://127.0.0.1:8080
 *   …
 *   await server.stop();
 *
 * Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions (SSE with
 * `stream: true`), POST /v1/completions, POST /v1/embeddings, and the image
 * job API (image-routes.ts; 501 ENGINE_UNAVAILABLE without an image model),
 * GET /v1/ledger (memory per device) and the playground page at / (playground.ts).
 * Safety: 127.0.0.1 unless `host` says otherwise (a warning is printed then),
 * an optional bearer key compared in constant time, a body size limit, no
 * CORS unless origins are listed, and a client that disconnects aborts its
 * generation within one token.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { GenaiError } from "../errors";
import type { ContextOptions, LoadModelOptions } from "../llm/types";
import type { DiffusionEngine, DiffusionLoadOptions } from "../diffusion/engine";
import { ManagedDiffusion } from "../orchestrator/managed-diffusion";
import { ManagedLlama } from "../orchestrator/managed-llama";
import { Orchestrator } from "../orchestrator/orchestrator";
import type { Priority } from "../orchestrator/priority";
import { options as validOptions } from "../util/validate";
import { errorBody, HttpError, toHttpError } from "./errors";
import { registerImageRoutes } from "./image-routes";
import { registerLlmRoutes } from "./llm-routes";
import { PLAYGROUND_HTML } from "./playground";

export interface ServedModel {
  /** The id clients send as `model` (default: the file name without .gguf). */
  id?: string;
  path: string;
  load?: Omit<LoadModelOptions, "signal" | "onProgress">;
  /** The chat context (default contextSize 4096); with `parallel`, contextSize is per request slot. */
  context?: ContextOptions;
  /**
   * Requests generated at once (default 1): the context gets that many
   * sequences (llama-server's -np slots), decoded together in one batch.
   */
  parallel?: number;
  /** A Jinja chat template to use instead of the model's own. */
  chatTemplate?: string;
}

export interface ServerOptions {
  /** Interface to bind (default "127.0.0.1"; anything else prints a warning). */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one). */
  port?: number;
  /** The LLMs served (at least one). */
  models: ServedModel[];
  /** An image model for the image job API (without one those endpoints answer 501 ENGINE_UNAVAILABLE). */
  imageModel?: { id?: string; load: DiffusionLoadOptions; engine?: DiffusionEngine };
  /** Clients must send `Authorization: Bearer <apiKey>` (default: no key). */
  apiKey?: string;
  /** Largest request body in bytes (default 16 MiB). */
  bodyLimit?: number;
  /** Origins allowed by CORS (default none: no CORS headers). */
  corsOrigins?: string[];
  /** Requests waiting or running per model before new ones get 503 SERVER_BUSY (default 64). */
  maxQueue?: number;
  /** Share the app's orchestrator (default: the server makes its own). */
  orchestrator?: Orchestrator;
  /** Where the bind warning goes (default console.warn). */
  warn?: (message: string) => void;
}

/** A served LLM: its chat resource, the embedding one made on first use, and how many requests it has in flight. */
export interface ModelEntry {
  id: string;
  path: string;
  created: number;
  chat: ManagedLlama;
  chatTemplate: string | undefined;
  embeddings?: Promise<ManagedLlama>;
  inFlight: number;
  contextOptions: ContextOptions;
  load: ServedModel["load"];
  /** Free sequences of the chat context, and what each last held (to send a conversation back to its slot). */
  slots: SlotPool;
}

/**
 * The request slots (sequences) of a model's context. take() gives the free
 * slot whose last request shares the longest beginning with this one (its KV
 * cache then holds that part already), else the least recently used; with
 * none free it waits for one (jobs of several models share the queue's limit).
 */
export class SlotPool {
  readonly #last: string[];
  readonly #used: number[];
  readonly #free: Set<number>;
  readonly #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#last = Array.from({ length: n }, () => "");
    this.#used = Array.from({ length: n }, () => 0);
    this.#free = new Set(Array.from({ length: n }, (_, i) => i));
  }
  async take(key: string): Promise<number> {
    while (this.#free.size === 0) await new Promise<void>((r) => this.#waiting.push(r));
    let best = -1;
    let bestLen = -1;
    for (const i of this.#free) {
      const last = this.#last[i];
      let n = 0;
      while (n < last.length && n < key.length && last[n] === key[n]) n++;
      if (n > bestLen || (n === bestLen && this.#used[i] < this.#used[best])) [best, bestLen] = [i, n];
    }
    this.#free.delete(best);
    this.#last[best] = key;
    this.#used[best] = Date.now();
    return best;
  }
  release(i: number): void {
    this.#free.add(i);
    this.#waiting.shift()?.();
  }
}

/** What the route handlers share. */
export interface ServerState {
  orchestrator: Orchestrator;
  models: Map<string, ModelEntry>;
  maxQueue: number;
  /** The running requests' abort controllers: stop() aborts them. */
  requests: Set<AbortController>;
  /** Runs `run` as an orchestrator job on the model's resource; rejects SERVER_BUSY past maxQueue. */
  submit<T>(
    entry: ModelEntry,
    kind: string,
    priority: Priority,
    signal: AbortSignal,
    run: (signal: AbortSignal) => Promise<T>,
    resource?: ManagedLlama,
  ): Promise<T>;
}

const SERVER_KEYS = ["host", "port", "models", "imageModel", "apiKey", "bodyLimit", "corsOrigins", "maxQueue", "orchestrator", "warn"] as const;

export class GenaiServer {
  readonly #app: FastifyInstance;
  readonly #host: string;
  readonly #port: number;
  readonly #state: ServerState;
  readonly #ownOrchestrator: boolean;
  readonly #image: ManagedDiffusion | undefined;
  #url: string | undefined;

  /** @internal use {@link createServer} */
  constructor(app: FastifyInstance, host: string, port: number, state: ServerState, ownOrchestrator: boolean, image: ManagedDiffusion | undefined) {
    this.#app = app;
    this.#host = host;
    this.#port = port;
    this.#state = state;
    this.#ownOrchestrator = ownOrchestrator;
    this.#image = image;
  }

  /** The base URL once started, e.g. "http://127.0.0.1:8080". */
  get url(): string | undefined {
    return this.#url;
  }

  /** Starts listening. @throws GenaiError INVALID_ARGUMENT when the address is taken or cannot be bound. */
  async start(): Promise<{ url: string }> {
    try {
      await this.#app.listen({ host: this.#host, port: this.#port });
    } catch (e) {
      throw new GenaiError("INVALID_ARGUMENT", `cannot listen on ${this.#host}:${this.#port}: ${(e as Error).message}`);
    }
    const addr = this.#app.server.address();
    const port = typeof addr === "object" && addr ? addr.port : this.#port;
    const host = this.#host.includes(":") ? `[${this.#host}]` : this.#host;
    this.#url = `http://${host}:${port}`;
    return { url: this.#url };
  }

  /** Stops accepting connections, aborts running generations, waits for them, frees the models. Idempotent. */
  async stop(): Promise<void> {
    const closing = this.#app.close(); // no new connections; waits for the open requests, which end once aborted
    for (const ac of this.#state.requests) ac.abort();
    await closing;
    for (const m of this.#state.models.values()) {
      this.#state.orchestrator.remove(m.chat);
      await m.chat.dispose();
      const emb = await m.embeddings?.catch(() => undefined);
      if (emb) {
        this.#state.orchestrator.remove(emb);
        await emb.dispose();
      }
    }
    this.#state.models.clear();
    if (this.#image) {
      this.#state.orchestrator.remove(this.#image);
      await this.#image.dispose();
    }
    if (this.#ownOrchestrator) this.#state.orchestrator.dispose();
  }
}

/** The file name without .gguf: the default model id. */
function defaultId(path: string): string {
  return (path.split(/[\\/]/).pop() ?? path).replace(/\.gguf$/i, "");
}

/** Constant-time comparison of a presented key with the configured one (both hashed: equal lengths). */
function keyMatches(presented: string, expected: string): boolean {
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Builds the server (models described and measured, nothing loaded until a
 * request needs it). @throws GenaiError INVALID_ARGUMENT (options), MODEL_NOT_FOUND, INVALID_MODEL
 */
export async function createServer(options: ServerOptions): Promise<GenaiServer> {
  const o = validOptions("options", options, SERVER_KEYS) as unknown as ServerOptions;
  if (!Array.isArray(o.models) || o.models.length === 0) throw new GenaiError("INVALID_ARGUMENT", "models must list at least one { path }");
  const host = o.host ?? "127.0.0.1";
  const port = o.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new GenaiError("INVALID_ARGUMENT", "port must be an integer in [0, 65535]");
  if (o.apiKey !== undefined && (typeof o.apiKey !== "string" || o.apiKey.length === 0))
    throw new GenaiError("INVALID_ARGUMENT", "apiKey must be a non-empty string");
  const warn = o.warn ?? ((m: string) => console.warn(m));
  if (host !== "127.0.0.1" && host !== "::1" && host !== "localhost")
    warn(`[genai-native serve] listening on ${host}: reachable from other machines${o.apiKey ? "" : ", with no API key"}`);

  // the server's own orchestrator runs as many LLM jobs at once as the models have slots
  const llmSlotsTotal = o.models.reduce((n, m) => n + (Number.isInteger(m?.parallel) ? (m.parallel as number) : 1), 0);
  const orchestrator = o.orchestrator ?? new Orchestrator({ queue: { limits: { llm: Math.max(1, llmSlotsTotal) } } });
  const models = new Map<string, ModelEntry>();

  for (const [i, m] of o.models.entries()) {
    const v = validOptions(`models[${i}]`, m, ["id", "path", "load", "context", "chatTemplate", "parallel"]) as unknown as ServedModel;
    if (typeof v.path !== "string") throw new GenaiError("INVALID_ARGUMENT", `models[${i}].path must be a string`);
    const id = v.id ?? defaultId(v.path);
    if (models.has(id)) throw new GenaiError("INVALID_ARGUMENT", `two models have the id ${id}`);
    const parallel = v.parallel ?? 1;
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64)
      throw new GenaiError("INVALID_ARGUMENT", `models[${i}].parallel must be an integer in [1, 64]`);
    const contextOptions = { ...v.context, contextSize: (v.context?.contextSize ?? 4096) * parallel, sequences: parallel };
    const chat = await ManagedLlama.create({ id, modelPath: v.path, load: v.load, context: contextOptions });
    orchestrator.add(chat, { priority: "interactive" });
    models.set(id, {
      ...{ id, path: v.path, created: Math.floor(Date.now() / 1000), chat, chatTemplate: v.chatTemplate },
      ...{ inFlight: 0, contextOptions, load: v.load, slots: new SlotPool(parallel) },
    });
  }
  const maxQueue = o.maxQueue ?? 64;
  let image: ManagedDiffusion | undefined;
  if (o.imageModel !== undefined) {
    const im = validOptions("imageModel", o.imageModel, ["id", "load", "engine"]) as unknown as NonNullable<ServerOptions["imageModel"]>;
    image = await ManagedDiffusion.create({ id: im.id, load: im.load, engine: im.engine });
    orchestrator.add(image, { priority: "background" });
  }

  const state: ServerState = {
    orchestrator,
    models,
    maxQueue,
    requests: new Set(),
    submit(entry, kind, priority, signal, run, resource) {
      if (entry.inFlight >= maxQueue)
        return Promise.reject(new HttpError(503, "SERVER_BUSY", `${entry.id} has ${entry.inFlight} requests in flight (maxQueue ${maxQueue})`));
      entry.inFlight++;
      const job = orchestrator.submit({ kind, resource: resource ?? entry.chat, priority, signal, run });
      return job.promise.finally(() => entry.inFlight--);
    },
  };

  const app = Fastify({
    bodyLimit: o.bodyLimit ?? 16 << 20,
    logger: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID();
    },
    // unknown fields are errors (additionalProperties: false), never dropped; no type coercion
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
  });
  app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
    reply.header("x-request-id", req.id);
    const origin = req.headers.origin;
    if (origin && o.corsOrigins?.includes(origin)) {
      reply.header("access-control-allow-origin", origin);
      reply.header("vary", "origin");
      reply.header("access-control-allow-headers", "authorization, content-type, x-request-id");
      reply.header("access-control-allow-methods", "GET, POST, DELETE, OPTIONS");
      if (req.method === "OPTIONS") return reply.code(204).send();
    }
    // the health check and the playground page itself are public; every API call needs the key
    if (o.apiKey !== undefined && req.url !== "/health" && req.url !== "/") {
      const auth = req.headers.authorization ?? "";
      const presented = auth.startsWith("Bearer ") ? auth.slice(7) : "";
      if (!keyMatches(presented, o.apiKey)) {
        const e = new HttpError(401, "UNAUTHORIZED", "a valid API key is required (Authorization: Bearer <key>)");
        return reply.code(401).send(errorBody(e));
      }
    }
  });
  app.setErrorHandler((err, _req, reply) => {
    const e = toHttpError(err);
    reply.code(e.status).send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new HttpError(404, "NOT_FOUND", `no route ${req.method} ${req.url}`);
    reply.code(404).send(errorBody(e));
  });
  app.get("/health", async () => ({ status: "ok" }));
  app.get("/", async (_req, reply) => reply.type("text/html; charset=utf-8").send(PLAYGROUND_HTML));
  // the orchestrator's memory ledger per device (bytes; budget null = unlimited)
  app.get("/v1/ledger", async () => ({
    devices: orchestrator.ledger().map((d) => ({ ...d, budget: Number.isFinite(d.budget) ? d.budget : null })),
  }));
  registerLlmRoutes(app, state);
  registerImageRoutes(app, state, image);
  return new GenaiServer(app, host, port, state, o.orchestrator === undefined, image);
}
