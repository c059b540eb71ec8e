/**
 * Chat beyond plain text: messages with tool calls and tool results, tool
 * definitions, and the reply split back into content, reasoning and tool
 * calls. The model's own syntax is llama.cpp's business (common/chat.cpp):
 * the template render returns a ChatFormat, the native parseChat applies its
 * parser; this file validates what goes in and turns successive parses of a
 * growing reply into stream events (as llama-server's common_chat_msg_diff).
 */
import { randomBytes } from "node:crypto";
import type { ModelHandle, NativeChatOptions } from "../binding/types";
import { GenaiError } from "../errors";
import { optBool, options as validOptions } from "../util/validate";
import { schemaText } from "./constraints";
import { type ChatImage, contentText } from "./media";
import type { ChatEvent, ChatFormat, ChatMessage, ParsedChatReply, ToolCall, ToolChoice, ToolDefinition } from "./types";

const MESSAGE_KEYS = ["role", "content", "toolCalls", "toolCallId", "toolName", "reasoning"] as const;

/** A message with its content as template text (images as media markers). */
export type TextMessage = ChatMessage & { content: string };

/**
 * Messages as the native layer takes them (every field checked); content parts
 * become text with a media marker per image, the images appended to `images`.
 * @throws GenaiError INVALID_ARGUMENT
 */
export function nativeMessages(messages: readonly ChatMessage[], images: ChatImage[] = []): TextMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new GenaiError("INVALID_ARGUMENT", "messages must be a non-empty array");
  return messages.map((m, i) => {
    const name = `messages[${i}]`;
    const v = validOptions(name, m, MESSAGE_KEYS) as Partial<ChatMessage>;
    if (typeof v.role !== "string") throw new GenaiError("INVALID_ARGUMENT", `${name} must be { role: string, content: string | parts }`);
    // image parts become libmtmd's media marker; the images are collected in order (lib/llm/media.ts)
    const out: TextMessage = { role: v.role, content: contentText(v.content, name, images) };
    for (const k of ["toolCallId", "toolName", "reasoning"] as const) {
      if (v[k] === undefined) continue;
      if (typeof v[k] !== "string") throw new GenaiError("INVALID_ARGUMENT", `${name}.${k} must be a string`);
      out[k] = v[k];
    }
    if (v.toolCalls !== undefined) {
      if (!Array.isArray(v.toolCalls)) throw new GenaiError("INVALID_ARGUMENT", `${name}.toolCalls must be an array`);
      out.toolCalls = v.toolCalls.map((c, k) => {
        const cn = `${name}.toolCalls[${k}]`;
        const call = validOptions(cn, c, ["id", "name", "arguments"]) as Partial<ToolCall>;
        if (typeof call.name !== "string" || call.name === "") throw new GenaiError("INVALID_ARGUMENT", `${cn}.name must be a non-empty string`);
        const args: unknown = call.arguments;
        // OpenAI clients send arguments as JSON text; an object is accepted and serialized
        const text = typeof args === "string" ? args : args !== undefined && typeof args === "object" && args !== null ? JSON.stringify(args) : undefined;
        if (text === undefined) throw new GenaiError("INVALID_ARGUMENT", `${cn}.arguments must be JSON text (or an object)`);
        if (call.id !== undefined && typeof call.id !== "string") throw new GenaiError("INVALID_ARGUMENT", `${cn}.id must be a string`);
        return { id: call.id ?? "", name: call.name, arguments: text };
      });
    }
    return out;
  });
}

/** The render options of tools/toolChoice/parallelToolCalls/thinking. @throws GenaiError INVALID_ARGUMENT */
export function nativeChatOptions(o: {
  tools?: readonly ToolDefinition[];
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
  enableThinking?: boolean;
}): Pick<NativeChatOptions, "tools" | "toolChoice" | "parallelToolCalls" | "enableThinking"> {
  if (o.tools !== undefined && !Array.isArray(o.tools))
    throw new GenaiError("INVALID_ARGUMENT", "tools must be an array of { name, description?, parameters? }");
  let tools = (o.tools ?? []).map((t, i) => {
    const name = `tools[${i}]`;
    const v = validOptions(name, t, ["name", "description", "parameters"]) as Partial<ToolDefinition>;
    if (typeof v.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(v.name))
      throw new GenaiError("INVALID_ARGUMENT", `${name}.name must be 1–64 letters, digits, "_", "." or "-" (OpenAI's rule for function names)`);
    if (v.description !== undefined && typeof v.description !== "string") throw new GenaiError("INVALID_ARGUMENT", `${name}.description must be a string`);
    const parameters = v.parameters === undefined ? JSON.stringify({ type: "object", properties: {} }) : schemaText(`${name}.parameters`, v.parameters);
    return { name: v.name, description: v.description ?? "", parameters };
  });
  if (new Set(tools.map((t) => t.name)).size !== tools.length) throw new GenaiError("INVALID_ARGUMENT", "tools must have distinct names");
  let toolChoice: "auto" | "required" | "none";
  const c: unknown = o.toolChoice ?? "auto";
  if (c === "auto" || c === "required" || c === "none") {
    toolChoice = c;
  } else if (typeof c === "object" && c !== null && typeof (c as { name?: unknown }).name === "string") {
    const wanted = (validOptions("toolChoice", c, ["name"]) as { name: string }).name;
    tools = tools.filter((t) => t.name === wanted);
    if (tools.length === 0) throw new GenaiError("INVALID_ARGUMENT", `toolChoice names ${JSON.stringify(wanted)}, which is not in tools`);
    toolChoice = "required";
  } else {
    throw new GenaiError("INVALID_ARGUMENT", 'toolChoice must be "auto", "required", "none" or { name }');
  }
  if (toolChoice === "required" && tools.length === 0) throw new GenaiError("INVALID_ARGUMENT", 'toolChoice "required" needs at least one tool');
  return {
    tools,
    toolChoice,
    parallelToolCalls: optBool("parallelToolCalls", o.parallelToolCalls, false),
    enableThinking: optBool("enableThinking", o.enableThinking, true),
  };
}

/** Whether replies of this format need parsing at all (a content-only format without thinking is its own content). */
export function formatNeedsParsing(f: ChatFormat): boolean {
  return f.format !== "Content-only" || f.supportsThinking;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** OpenAI-style tool call id: "call_" and 24 random base-62 characters. */
function newToolCallId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return `call_${Array.from(randomBytes(24), (b) => alphabet[b % 62]).join("")}`;
}

/**
 * Follows a reply as it grows: each feed() parses the raw text so far
 * (partial) and returns the events since the last parse; finish() parses the
 * whole reply. Tool call ids are fixed at a call's first appearance.
 */
export class ChatReplyTracker {
  readonly #handle: ModelHandle;
  readonly #format: ChatFormat;
  #raw = "";
  #last: ParsedChatReply = { content: "", reasoning: "", toolCalls: [] };
  readonly #ids: string[] = [];

  constructor(handle: ModelHandle, format: ChatFormat) {
    this.#handle = handle;
    this.#format = format;
  }

  /** Appends generated text; returns the new events (none when the partial parse fails: the next one catches up). */
  feed(piece: string): ChatEvent[] {
    this.#raw += piece;
    let next: ParsedChatReply;
    try {
      next = this.#withIds(this.#handle.parseChat(this.#raw, true, this.#format));
    } catch {
      return [];
    }
    return this.#diff(next);
  }

  /**
   * The whole reply parsed, with the events not yet sent; or the format error:
   * the raw text is then the content when the reply does not parse, and a
   * tool call whose arguments are not complete JSON (a reply cut mid-call) is dropped.
   */
  finish(): { reply: ParsedChatReply; events: ChatEvent[]; formatError?: string } {
    try {
      const reply = this.#withIds(this.#handle.parseChat(this.#raw, false, this.#format));
      const events = this.#diff(reply);
      const cut = reply.toolCalls.findIndex((c) => !isJson(c.arguments));
      if (cut < 0) return { reply, events };
      const formatError = `tool call ${cut} (${reply.toolCalls[cut].name}) has arguments that are not complete JSON: the reply was cut or broke its format`;
      return { reply: { ...reply, toolCalls: reply.toolCalls.filter((c) => isJson(c.arguments)) }, events, formatError };
    } catch (e) {
      const reply = { content: this.#raw, reasoning: "", toolCalls: [] };
      return { reply, events: this.#diff(reply), formatError: (e as Error).message };
    }
  }

  #withIds(r: ParsedChatReply): ParsedChatReply {
    r.toolCalls.forEach((c, i) => {
      this.#ids[i] ??= c.id || newToolCallId();
      c.id = this.#ids[i];
    });
    return r;
  }

  /** Events from the last parse to `next`: text appended to content/reasoning, arguments appended to each call. */
  #diff(next: ParsedChatReply): ChatEvent[] {
    const prev = this.#last;
    const events: ChatEvent[] = [];
    if (next.reasoning.length > prev.reasoning.length && next.reasoning.startsWith(prev.reasoning))
      events.push({ type: "reasoning", text: next.reasoning.slice(prev.reasoning.length) });
    if (next.content.length > prev.content.length && next.content.startsWith(prev.content))
      events.push({ type: "content", text: next.content.slice(prev.content.length) });
    next.toolCalls.forEach((c, i) => {
      const before = prev.toolCalls[i];
      if (before === undefined) events.push({ type: "toolCall", index: i, id: c.id, name: c.name, argumentsDelta: c.arguments });
      else if (c.arguments.length > before.arguments.length && c.arguments.startsWith(before.arguments))
        events.push({ type: "toolCall", index: i, id: c.id, name: c.name, argumentsDelta: c.arguments.slice(before.arguments.length) });
    });
    // a partial parse may show less than the last one (text held back while a marker may be starting): keep the longer
    this.#last = {
      content: next.content.startsWith(prev.content) ? next.content : prev.content,
      reasoning: next.reasoning.startsWith(prev.reasoning) ? next.reasoning : prev.reasoning,
      toolCalls: next.toolCalls.length >= prev.toolCalls.length ? next.toolCalls : prev.toolCalls,
    };
    return events;
  }
}
