/** Option validation shared by the API: every failure is a GenaiError INVALID_ARGUMENT naming the option. */
import { GenaiError } from "../errors";

function fail(name: string, what: string, value: unknown): never {
  let shown: string;
  try {
    shown = typeof value === "string" ? JSON.stringify(value) : String(value);
  } catch {
    shown = typeof value;
  }
  throw new GenaiError("INVALID_ARGUMENT", `${name} must be ${what} (got ${shown})`);
}

/** A finite number in [min, max], or `def` when undefined. */
export function optNumber(name: string, value: unknown, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) fail(name, `a finite number in [${min}, ${max}]`, value);
  return value;
}

/** An integer in [min, max], or `def` when undefined. */
export function optInt(name: string, value: unknown, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) fail(name, `an integer in [${min}, ${max}]`, value);
  return value;
}

export function optBool(name: string, value: unknown, def: boolean): boolean {
  if (value === undefined) return def;
  if (typeof value !== "boolean") fail(name, "a boolean", value);
  return value;
}

export function optString(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") fail(name, "a string", value);
  return value;
}

export function requireString(name: string, value: unknown): string {
  if (typeof value !== "string") fail(name, "a string", value);
  return value;
}

export function optOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[], def: T): T {
  if (value === undefined) return def;
  if (typeof value !== "string" || !allowed.includes(value as T)) fail(name, `one of ${allowed.join(", ")}`, value);
  return value as T;
}

export function optFunction<F>(name: string, value: unknown): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "function") fail(name, "a function", value);
  return value as F;
}

export function optSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) fail(name, "an AbortSignal", value);
  return value;
}

export function optObject(name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(name, "an object", value);
  return value as Record<string, unknown>;
}

/**
 * An options object: undefined → {}; anything but a plain object (null, an
 * array, a number) is INVALID_ARGUMENT; so is a key not in `keys` — a
 * misspelled or unsupported option must not be silently ignored (a caller
 * passing `grammar` would believe it got constrained output).
 * @throws GenaiError INVALID_ARGUMENT naming the option
 */
export function options(name: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  const o = optObject(name, value);
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new GenaiError("INVALID_ARGUMENT", `unknown option ${name}.${k}; known: ${keys.join(", ")}`);
  }
  return o;
}

/**
 * The runtime list of an options type's keys, checked by the compiler to be
 * complete: `optionKeys<GenerateOptions>()("maxTokens", …)` fails to compile
 * when a key of the type is missing (or one is not a key of it).
 */
export function optionKeys<T>() {
  return <const K extends readonly (keyof T & string)[]>(
    ...keys: K & ([Exclude<keyof T, K[number]>] extends [never] ? unknown : { missingKeys: Exclude<keyof T, K[number]> })
  ): readonly string[] => keys;
}

/**
 * Token ids: an Int32Array, or an array of integers in [0, 2^31 − 1]
 * (Int32Array.from would silently wrap 2^40 to 0). The vocabulary range is
 * checked natively (native/llm/model.cpp TokensFromJs).
 * @throws GenaiError INVALID_ARGUMENT
 */
export function tokenIds(name: string, value: unknown): Int32Array {
  if (value instanceof Int32Array) return value;
  if (!Array.isArray(value)) fail(name, "an Int32Array or an array of token ids", value);
  for (const [i, t] of value.entries()) {
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > 0x7fffffff) fail(`${name}[${i}]`, "an integer token id in [0, 2^31 − 1]", t);
  }
  return Int32Array.from(value as number[]);
}
