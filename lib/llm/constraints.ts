/**
 * Output constraints of a generation, validated before the native layer sees
 * them (which checks them again): a GBNF grammar, a JSON schema (the native
 * side turns it into a grammar with llama.cpp common's json_schema_to_grammar),
 * chat's OpenAI-style `responseFormat`, and a logit bias.
 */
import type { GenerateParams } from "../binding/types";
import { GenaiError } from "../errors";
import { optObject, options as validOptions } from "../util/validate";
import type { ChatOptions, JsonSchema, ResponseFormat } from "./types";

/** Schema nesting limit, the same as native/llm/sampler.h's (deeper input would overflow llama.cpp's recursive converter); grammar nesting is checked there. */
export const MAX_SCHEMA_NESTING = 64;
/** Largest grammar or schema text accepted, in UTF-16 code units (1 Mi). */
export const MAX_CONSTRAINT_CHARS = 1 << 20;

function depthOf(v: unknown, depth: number): number {
  if (depth > MAX_SCHEMA_NESTING) return depth;
  if (typeof v !== "object" || v === null) return depth - 1;
  let deepest = depth;
  for (const x of Object.values(v)) deepest = Math.max(deepest, depthOf(x, depth + 1));
  return deepest;
}

/** A JSON schema as JSON text, checked: an object or boolean, at most MAX_SCHEMA_NESTING deep, at most MAX_CONSTRAINT_CHARS long. @throws GenaiError INVALID_ARGUMENT naming `name` */
export function schemaText(name: string, schema: JsonSchema): string {
  if (typeof schema !== "boolean" && (typeof schema !== "object" || schema === null || Array.isArray(schema)))
    throw new GenaiError("INVALID_ARGUMENT", `${name} must be a JSON schema object (or a boolean)`);
  const depth = depthOf(schema, 1);
  if (depth > MAX_SCHEMA_NESTING) throw new GenaiError("INVALID_ARGUMENT", `${name} nests more than ${MAX_SCHEMA_NESTING} levels deep`);
  let text: string;
  try {
    text = JSON.stringify(schema);
  } catch (e) {
    throw new GenaiError("INVALID_ARGUMENT", `${name} is not serializable as JSON (${(e as Error).message})`);
  }
  if (text.length > MAX_CONSTRAINT_CHARS) throw new GenaiError("INVALID_ARGUMENT", `${name} is longer than ${MAX_CONSTRAINT_CHARS} characters as JSON`);
  return text;
}

function responseFormatSchema(rfIn: ResponseFormat): string {
  const type = optObject("responseFormat", rfIn).type;
  const rf = validOptions("responseFormat", rfIn, type === "json_schema" ? ["type", "schema"] : ["type"]) as ResponseFormat;
  switch (rf.type) {
    case "text":
      return "";
    case "json_object":
      return JSON.stringify({ type: "object" });
    case "json_schema":
      if (rf.schema === undefined) throw new GenaiError("INVALID_ARGUMENT", 'responseFormat { type: "json_schema" } needs a schema');
      return schemaText("responseFormat.schema", rf.schema);
    default:
      throw new GenaiError(
        "INVALID_ARGUMENT",
        `responseFormat.type must be "text", "json_object" or "json_schema", not ${JSON.stringify((rf as { type: unknown }).type)}`,
      );
  }
}

function logitBiasPairs(bias: unknown): [number, number][] {
  if (bias === undefined) return [];
  if (typeof bias !== "object" || bias === null || Array.isArray(bias))
    throw new GenaiError("INVALID_ARGUMENT", "logitBias must be an object of token id → bias");
  return Object.entries(bias).map(([k, v]): [number, number] => {
    const token = Number(k);
    if (!/^\d+$/.test(k) || !Number.isSafeInteger(token)) throw new GenaiError("INVALID_ARGUMENT", `logitBias key ${JSON.stringify(k)} is not a token id`);
    if (typeof v !== "number" || Number.isNaN(v) || v === Number.POSITIVE_INFINITY || (Math.abs(v) > 1e9 && v !== Number.NEGATIVE_INFINITY))
      throw new GenaiError("INVALID_ARGUMENT", `logitBias[${k}] must be a number in [-1e9, 1e9], or -Infinity`);
    return [token, v];
  });
}

/**
 * The constraint fields of the native generate params.
 * @throws GenaiError INVALID_ARGUMENT (wrong types, both a grammar and a schema, too deep or too long)
 */
export function constraintParams(o: ChatOptions): Pick<GenerateParams, "grammar" | "jsonSchema" | "logitBias"> {
  if (o.grammar !== undefined && typeof o.grammar !== "string") throw new GenaiError("INVALID_ARGUMENT", "grammar must be a string (GBNF)");
  if (o.grammar !== undefined && o.grammar.length > MAX_CONSTRAINT_CHARS)
    throw new GenaiError("INVALID_ARGUMENT", `grammar is longer than ${MAX_CONSTRAINT_CHARS} characters`);
  const given = [o.grammar !== undefined && "grammar", o.jsonSchema !== undefined && "jsonSchema", o.responseFormat !== undefined && "responseFormat"].filter(
    Boolean,
  );
  if (given.length > 1) throw new GenaiError("INVALID_ARGUMENT", `${given.join(" and ")} cannot be combined: give one`);
  const jsonSchema =
    o.jsonSchema !== undefined ? schemaText("jsonSchema", o.jsonSchema) : o.responseFormat !== undefined ? responseFormatSchema(o.responseFormat) : "";
  return { grammar: o.grammar ?? "", jsonSchema, logitBias: logitBiasPairs(o.logitBias) };
}
