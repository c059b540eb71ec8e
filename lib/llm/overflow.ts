/**
 * The tokens a context overflow never drops (`keepTokens`), when the caller
 * gives none: for chat, the tokens of the leading system messages as the
 * template renders them (the longest common prefix with the full prompt);
 * otherwise the BOS token when the prompt starts with one. Only computed for
 * contextOverflow "truncateMiddle" / "shift" (native/llm/overflow.h).
 */
import type { LlamaModel } from "./model";
import type { ChatMessage } from "./types";

export async function defaultKeepTokens(
  model: LlamaModel,
  tokens: Int32Array,
  chat?: { messages: readonly ChatMessage[]; template?: string },
): Promise<number> {
  const system = chat ? chat.messages.slice(0, chat.messages.findIndex((m) => m.role !== "system") >>> 0) : [];
  if (chat && system.length > 0) {
    const { prompt } = await model.applyChatTemplate(system, { template: chat.template, addAssistant: false });
    const head = await model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
    let n = 0;
    while (n < head.length && n < tokens.length && head[n] === tokens[n]) n++;
    return n;
  }
  const [bos] = await model.tokenize("", { addSpecial: true });
  return bos !== undefined && tokens[0] === bos ? 1 : 0;
}
