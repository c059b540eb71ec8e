/**
 * The LLM endpoints: GET /v1/models, POST /v1/chat/completions,
 * POST /v1/completions, POST /v1/embeddings. Each request runs as an
 * orchestrator job on its model (queued behind the model's other requests);
 * a streamed reply is server-sent events in OpenAI's chunk format, ending with
 * `data: [DONE]`. A client that goes away aborts its generation.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { LlamaSequence } from "../llm/context";
import type { ChatEvent, CompletionResult } from "../llm/types";
import { ManagedLlama } from "../orchestrator/managed-llama";
import { PRIORITIES, type Priority } from "../orchestrator/priority";
import { errorBody, HttpError, toHttpError } from "./errors";
import type { ModelEntry, ServerState } from "./index";
import {
  type ChatRequest,
  type CompletionRequest,
  chatCompletion,
  chatMessages,
  chatOptions,
  completionOptions,
  finishReason,
  openAiLogprobs,
  usage,
} from "./openai";
import { chatBody, completionBody, embeddingBody } from "./schemas";
import { EventStream } from "./sse";

/** Runs `work` on a request slot (a sequence of the model's context) taken for it. */
async function withSlot<T>(entry: ModelEntry, key: string, work: (seq: LlamaSequence) => Promise<T>): Promise<T> {
  const slot = await entry.slots.take(key);
  try {
    return await work(entry.chat.context.sequence(slot));
  } finally {
    entry.slots.release(slot);
  }
}

/** The job priority a request asks for in its `X-Priority` header (default "interactive"). @throws HttpError 400 */
function priorityOf(req: FastifyRequest): Priority {
  const h = req.headers["x-priority"];
  if (h === undefined) return "interactive";
  if (typeof h === "string" && (PRIORITIES as readonly string[]).includes(h)) return h as Priority;
  throw new HttpError(400, "INVALID_REQUEST", `X-Priority must be one of ${PRIORITIES.join(", ")}`, "x-priority");
}

function lookup(state: ServerState, model: string): ModelEntry {
  const entry = state.models.get(model);
  if (!entry) throw new HttpError(404, "NOT_FOUND", `the model ${JSON.stringify(model)} is not served here (GET /v1/models lists them)`, "model");
  return entry;
}

/** An AbortSignal that fires when the client goes away before the response is complete, or the server stops. */
function clientGone(reply: FastifyReply, state: ServerState): AbortSignal {
  const ac = new AbortController();
  state.requests.add(ac);
  reply.raw.on("close", () => {
    state.requests.delete(ac);
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac.signal;
}

/** Runs a streamed request: SSE once the job starts; an error before that is a plain HTTP error, after it an `error` event. */
async function streamed(sse: EventStream, job: () => Promise<unknown>): Promise<void> {
  try {
    await job();
  } catch (e) {
    if (!sse.opened) throw e;
    sse.send(errorBody(toHttpError(e)));
  }
  sse.end();
}

export function registerLlmRoutes(app: FastifyInstance, state: ServerState): void {
  app.get("/v1/models", async () => ({
    object: "list",
    data: [...state.models.values()].map((m) => ({ id: m.id, object: "model", created: m.created, owned_by: "genai-native" })),
  }));

  app.post("/v1/chat/completions", { schema: { body: chatBody } }, async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as ChatRequest;
    const entry = lookup(state, b.model);
    const options = chatOptions(b);
    const messages = chatMessages(b.messages);
    const signal = clientGone(reply, state);
    const id = `chatcmpl-${randomUUID().replaceAll("-", "")}`;
    const created = Math.floor(Date.now() / 1000);
    // a request slot (sequence) for the job's duration: the one that last held this conversation's beginning
    const key = JSON.stringify(b.messages);
    const inSlot = <T>(work: (seq: LlamaSequence) => Promise<T>) => withSlot(entry, key, work);
    const run = (seq: LlamaSequence, sig: AbortSignal) => seq.chat(messages, { ...options, template: entry.chatTemplate, signal: sig });
    if (!b.stream) {
      const r = await state.submit(entry, "llm.chat", priorityOf(req), signal, (sig) => inSlot((seq) => run(seq, sig).result));
      return chatCompletion(id, entry.id, created, r);
    }
    const sse = new EventStream(reply);
    const chunk = (delta: Record<string, unknown>, finish: string | null = null, logprobs: unknown = null) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: entry.id,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs }],
    });
    await streamed(sse, () =>
      state.submit(entry, "llm.chat", priorityOf(req), signal, (sig) =>
        inSlot(async (seq) => {
          const stream = run(seq, sig);
          sse.open();
          sse.send(chunk({ role: "assistant", content: "" }));
          const seen = new Set<number>();
          for await (const e of stream.events() as AsyncIterable<ChatEvent>) {
            if (e.type === "content") sse.send(chunk({ content: e.text }));
            else if (e.type === "reasoning") sse.send(chunk({ reasoning_content: e.text }));
            else {
              const first = !seen.has(e.index);
              seen.add(e.index);
              const fn = first ? { name: e.name, arguments: e.argumentsDelta } : { arguments: e.argumentsDelta };
              sse.send(chunk({ tool_calls: [{ index: e.index, ...(first ? { id: e.id, type: "function" } : {}), function: fn }] }));
            }
          }
          const r = await stream.result;
          if (r.stopReason === "aborted") return r; // the client is gone (the registry's record keeps the result)
          // logprobs come with the result: every token's, in the chunk that ends the reply
          sse.send(chunk({}, finishReason(r, r.toolCalls), r.logprobs ? openAiLogprobs(r.logprobs) : null));
          if (b.stream_options?.include_usage) sse.send({ id, object: "chat.completion.chunk", created, model: entry.id, choices: [], usage: usage(r) });
          sse.send("[DONE]");
          return r;
        }),
      ),
    );
  });

  app.post("/v1/completions", { schema: { body: completionBody } }, async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as CompletionRequest;
    const entry = lookup(state, b.model);
    const options = completionOptions(b);
    const signal = clientGone(reply, state);
    const id = `cmpl-${randomUUID().replaceAll("-", "")}`;
    const created = Math.floor(Date.now() / 1000);
    const body = (r: CompletionResult, text: string, finish: string | null) => ({
      id,
      object: "text_completion",
      created,
      model: entry.id,
      choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
      ...(finish !== null ? { usage: usage(r) } : {}),
    });
    const run = (seq: LlamaSequence, sig: AbortSignal) => seq.generate(b.prompt, { ...options, signal: sig });
    if (!b.stream) {
      const r = await state.submit(entry, "llm.complete", priorityOf(req), signal, (sig) => withSlot(entry, b.prompt, (seq) => run(seq, sig).result));
      return body(r, r.text, finishReason(r));
    }
    const sse = new EventStream(reply);
    await streamed(sse, () =>
      state.submit(entry, "llm.complete", priorityOf(req), signal, (sig) =>
        withSlot(entry, b.prompt, async (seq) => {
          const stream = run(seq, sig);
          sse.open();
          for await (const piece of stream)
            sse.send({ id, object: "text_completion", created, model: entry.id, choices: [{ text: piece, index: 0, logprobs: null, finish_reason: null }] });
          const r = await stream.result;
          if (r.stopReason === "aborted") return r;
          sse.send({
            id,
            object: "text_completion",
            created,
            model: entry.id,
            choices: [{ text: "", index: 0, logprobs: null, finish_reason: finishReason(r) }],
          });
          if (b.stream_options?.include_usage) sse.send({ id, object: "text_completion", created, model: entry.id, choices: [], usage: usage(r) });
          sse.send("[DONE]");
          return r;
        }),
      ),
    );
  });

  app.post("/v1/embeddings", { schema: { body: embeddingBody } }, async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as { model: string; input: string | string[]; encoding_format?: "float" | "base64" };
    const entry = lookup(state, b.model);
    const inputs = typeof b.input === "string" ? [b.input] : b.input;
    // an embedding context of its own, made on first use (llama.cpp's embeddings need a context created for them)
    entry.embeddings ??= ManagedLlama.create({
      id: `${entry.id}#embeddings`,
      modelPath: entry.path,
      load: entry.load,
      context: { embeddings: true, contextSize: 2048, batchSize: 2048 },
    }).then((m) => {
      state.orchestrator.add(m, { priority: "interactive" });
      return m;
    });
    const resource = await entry.embeddings;
    const signal = clientGone(reply, state);
    const { vectors, tokens } = await state.submit(
      entry,
      "llm.embed",
      priorityOf(req),
      signal,
      async () => {
        const ctx = resource.context;
        const vectors: Float32Array[] = [];
        let tokens = 0;
        for (const text of inputs) {
          tokens += (await ctx.model.tokenize(text)).length;
          vectors.push(await ctx.embed(text));
        }
        return { vectors, tokens };
      },
      resource,
    );
    const encode = (v: Float32Array) => (b.encoding_format === "base64" ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") : Array.from(v));
    return {
      object: "list",
      data: vectors.map((v, index) => ({ object: "embedding", index, embedding: encode(v) })),
      model: entry.id,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });
}
