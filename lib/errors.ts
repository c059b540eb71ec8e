/**
 * Typed errors. Every error genai-native throws or rejects with is a
 * {@link GenaiError} with a stable `code`; the native addon sets the same codes
 * (native/util/errors.h) and {@link toGenaiError} wraps them.
 */
export type GenaiErrorCode =
  | "MODEL_NOT_FOUND"
  | "INVALID_MODEL"
  | "INVALID_ARGUMENT"
  | "OUT_OF_MEMORY"
  | "ABORTED"
  | "DISPOSED"
  | "BUSY"
  | "ENGINE_UNAVAILABLE"
  | "BACKEND_ERROR";

const CODES: ReadonlySet<string> = new Set<GenaiErrorCode>([
  "MODEL_NOT_FOUND",
  "INVALID_MODEL",
  "INVALID_ARGUMENT",
  "OUT_OF_MEMORY",
  "ABORTED",
  "DISPOSED",
  "BUSY",
  "ENGINE_UNAVAILABLE",
  "BACKEND_ERROR",
]);

export class GenaiError extends Error {
  readonly code: GenaiErrorCode;

  constructor(code: GenaiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GenaiError";
    this.code = code;
  }
}

export function isGenaiError(e: unknown, code?: GenaiErrorCode): e is GenaiError {
  return e instanceof GenaiError && (code === undefined || e.code === code);
}

/** Wraps anything thrown (native errors carry `code`) into a GenaiError; unknown codes become BACKEND_ERROR. */
export function toGenaiError(e: unknown): GenaiError {
  if (e instanceof GenaiError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  return new GenaiError(typeof code === "string" && CODES.has(code) ? (code as GenaiErrorCode) : "BACKEND_ERROR", err.message, { cause: err });
}

/** Runs fn, rethrowing whatever it throws (sync or async) as a GenaiError. */
export async function wrapErrors<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toGenaiError(e);
  }
}
