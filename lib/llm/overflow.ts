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
  let leadingSystem = 0;
  while (chat && leadingSystem < chat.messages.length && chat.messages[leadingSystem].role === "system") leadingSystem++;
  if (chat && leadingSystem > 0) {
    const system = chat.messages.slice(0, leadingSystem);
    const { prompt } = await model.applyChatTemplate(system, { template: chat.template, addAssistant: false });
    const head = await model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
    let n = 0;
    while (n < head.length && n < tokens.length && head[n] === tokens[n]) n++;
    return n;
  }
  return model.bosToken >= 0 && tokens[0] === model.bosToken ? 1 : 0;
}
