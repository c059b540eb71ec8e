/** Server-sent events (text/event-stream) on a fastify reply taken over from fastify (hijacked). */
import type { FastifyReply } from "fastify";

/** Server-sent events on a hijacked reply: the head on the first write, one `data:` line per event. */
export class EventStream {
  readonly #reply: FastifyReply;
  #open = false;
  constructor(reply: FastifyReply) {
    this.#reply = reply;
  }
  open(): void {
    if (this.#open) return;
    this.#open = true;
    this.#reply.hijack();
    const headers = { ...this.#reply.getHeaders(), "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" };
    this.#reply.raw.writeHead(200, headers as Record<string, string>);
  }
  get opened(): boolean {
    return this.#open;
  }
  /** One event: `data:` (JSON unless a string), with an `event:` name when given. */
  send(data: unknown, event?: string): void {
    this.open();
    if (this.#reply.raw.writableEnded) return;
    this.#reply.raw.write(`${event ? `event: ${event}\n` : ""}data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  }
  end(): void {
    if (!this.#reply.raw.writableEnded) this.#reply.raw.end();
  }
}
