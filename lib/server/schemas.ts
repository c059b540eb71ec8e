/**
 * JSON schemas of the request bodies (fastify validates with ajv before a
 * handler runs). additionalProperties is false everywhere: a field this
 * server does not implement is a 400 naming it, never silently ignored.
 */
const num = (minimum: number, maximum: number) => ({ type: "number", minimum, maximum });
const int = (minimum: number, maximum: number) => ({ type: "integer", minimum, maximum });
const stop = {
  anyOf: [
    { type: "string", minLength: 1 },
    { type: "array", items: { type: "string", minLength: 1 }, maxItems: 16 },
  ],
};
const logitBias = { type: "object", additionalProperties: num(-100, 100), propertyNames: { pattern: "^[0-9]+$" } };

const sampling = {
  model: { type: "string", minLength: 1 },
  stream: { type: "boolean" },
  stream_options: { type: "object", additionalProperties: false, properties: { include_usage: { type: "boolean" } } },
  max_tokens: int(1, 2 ** 30),
  temperature: num(0, 2),
  top_p: num(0, 1),
  top_k: int(0, 2 ** 30),
  min_p: num(0, 1),
  repeat_penalty: num(0.000001, 100),
  presence_penalty: num(-2, 2),
  frequency_penalty: num(-2, 2),
  seed: int(0, 2 ** 32 - 2),
  stop,
  logit_bias: logitBias,
  n: { type: "integer", enum: [1] },
  user: { type: "string", maxLength: 256 },
};

const content = {
  anyOf: [
    { type: "string" },
    { type: "null" },
    {
      type: "array",
      items: {
        anyOf: [
          { type: "object", additionalProperties: false, required: ["type", "text"], properties: { type: { const: "text" }, text: { type: "string" } } },
          {
            type: "object",
            additionalProperties: false,
            required: ["type", "image_url"],
            properties: {
              type: { const: "image_url" },
              image_url: {
                type: "object",
                additionalProperties: false,
                required: ["url"],
                properties: { url: { type: "string" }, detail: { enum: ["auto", "low", "high"] } },
              },
            },
          },
        ],
      },
    },
  ],
};

const toolCall = {
  type: "object",
  additionalProperties: false,
  required: ["id", "type", "function"],
  properties: {
    id: { type: "string" },
    type: { const: "function" },
    function: {
      type: "object",
      additionalProperties: false,
      required: ["name", "arguments"],
      properties: { name: { type: "string" }, arguments: { type: "string" } },
    },
  },
};

const message = {
  type: "object",
  additionalProperties: false,
  required: ["role"],
  properties: {
    role: { enum: ["system", "developer", "user", "assistant", "tool"] },
    content,
    name: { type: "string" },
    tool_call_id: { type: "string" },
    tool_calls: { type: "array", items: toolCall },
    reasoning_content: { type: "string" },
  },
};

const tool = {
  type: "object",
  additionalProperties: false,
  required: ["type", "function"],
  properties: {
    type: { const: "function" },
    function: {
      type: "object",
      additionalProperties: false,
      required: ["name"],
      properties: { name: { type: "string" }, description: { type: "string" }, parameters: { type: "object" }, strict: { type: "boolean" } },
    },
  },
};

export const chatBody = {
  type: "object",
  additionalProperties: false,
  required: ["model", "messages"],
  properties: {
    ...sampling,
    messages: { type: "array", minItems: 1, items: message },
    max_completion_tokens: int(1, 2 ** 30),
    logprobs: { type: "boolean" },
    top_logprobs: int(0, 20),
    tools: { type: "array", items: tool, maxItems: 128 },
    tool_choice: {
      anyOf: [
        { enum: ["auto", "none", "required"] },
        {
          type: "object",
          additionalProperties: false,
          required: ["type", "function"],
          properties: {
            type: { const: "function" },
            function: { type: "object", additionalProperties: false, required: ["name"], properties: { name: { type: "string" } } },
          },
        },
      ],
    },
    parallel_tool_calls: { type: "boolean" },
    response_format: {
      anyOf: [
        { type: "object", additionalProperties: false, required: ["type"], properties: { type: { enum: ["text", "json_object"] } } },
        {
          type: "object",
          additionalProperties: false,
          required: ["type", "json_schema"],
          properties: {
            type: { const: "json_schema" },
            json_schema: {
              type: "object",
              additionalProperties: false,
              required: ["name"],
              properties: { name: { type: "string" }, description: { type: "string" }, schema: { type: "object" }, strict: { type: "boolean" } },
            },
          },
        },
      ],
    },
    // "none" turns thinking off; other efforts have no meaning here (use reasoning_budget)
    reasoning_effort: { const: "none" },
    reasoning_budget: int(0, 2 ** 30),
  },
};

export const completionBody = {
  type: "object",
  additionalProperties: false,
  required: ["model", "prompt"],
  properties: { ...sampling, prompt: { type: "string" } },
};

export const embeddingBody = {
  type: "object",
  additionalProperties: false,
  required: ["model", "input"],
  properties: {
    model: { type: "string", minLength: 1 },
    input: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, minItems: 1, maxItems: 2048 }] },
    encoding_format: { enum: ["float", "base64"] },
    user: { type: "string", maxLength: 256 },
  },
};

export const imageBody = {
  type: "object",
  additionalProperties: false,
  required: ["prompt"],
  properties: {
    model: { type: "string" },
    prompt: { type: "string", minLength: 1 },
    negative_prompt: { type: "string" },
    // the seed app's batch limit
    n: int(1, 5),
    size: { type: "string", pattern: "^[0-9]{2,5}x[0-9]{2,5}$" },
    steps: int(1, 200),
    cfg_scale: num(0, 50),
    sampler: { type: "string" },
    scheduler: { type: "string" },
    seed: int(0, 2 ** 32 - 2),
    response_format: { const: "b64_json" },
    priority: { enum: ["immediate", "interactive", "preload", "background"] },
    // img2img / inpainting: base64 PNGs (a data: URL too); white in the mask is repainted
    init_image: { type: "string", minLength: 1 },
    strength: num(0, 1),
    mask: { type: "string", minLength: 1 },
    // preview images during sampling, as "preview" events of GET …/:id/events
    preview: {
      anyOf: [
        { type: "boolean" },
        {
          type: "object",
          additionalProperties: false,
          properties: { mode: { enum: ["proj", "tae", "vae"] }, interval_steps: int(1, 1000) },
        },
      ],
    },
  },
};
