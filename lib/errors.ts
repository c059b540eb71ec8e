/**
 * Typed errors. Every error genai-native throws or rejects with is a
 * {@link GenaiError} with a stable `code`. The native addon constructs this
 * same class (lib/binding/load.ts hands it over at load; native/util/errors.cpp
 * builds it), so no call site re-wraps native errors.
 */

/**
 * The one list of error codes. C++ names the ones it uses in
 * native/util/errors.h and checks them against this list when it loads.
 */
export const ERROR_CODES = [
  /** The model file does not exist. */
  "MODEL_NOT_FOUND",
  /** The file exists but is not a model the engine can load (not GGUF, truncated, unsupported). */
  "INVALID_MODEL",
  /** An option or argument is of the wrong type, out of range, or unknown. */
  "INVALID_ARGUMENT",
  /** An allocation (host or device) failed, or a job does not fit the memory budget. */
  "OUT_OF_MEMORY",
  /** Cancelled by an AbortSignal, `cancel()` or dispose. */
  "ABORTED",
  /** The object has been disposed. */
  "DISPOSED",
  /** One operation per context at a time. */
  "BUSY",
  /** The addon, or the engine asked for, is not in this build or does not load. */
  "ENGINE_UNAVAILABLE",
  /** The engine failed for another reason; the message carries its own log lines. */
  "BACKEND_ERROR",
  /** A model host refused the request (HTTP 401/403: a gated or private repository needs a token, HF_TOKEN). */
  "ACCESS_DENIED",
  /** Reading or writing a file failed (disk full, permissions). */
  "IO_ERROR",
] as const;

export type GenaiErrorCode = (typeof ERROR_CODES)[number];

const CODES: ReadonlySet<string> = new Set<string>(ERROR_CODES);

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

/**
 * Wraps a value thrown by code outside genai-native (a user's job function,
 * an engine test double) into a GenaiError: an Error's `code` is kept when it
 * is one of {@link ERROR_CODES}, anything else becomes BACKEND_ERROR.
 */
export function toGenaiError(e: unknown): GenaiError {
  if (e instanceof GenaiError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  return new GenaiError(typeof code === "string" && CODES.has(code) ? (code as GenaiErrorCode) : "BACKEND_ERROR", err.message, { cause: err });
}
