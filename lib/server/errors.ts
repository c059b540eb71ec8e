/**
 * HTTP errors in OpenAI's body shape, `{ error: { message, type, code, param } }`,
 * with this project's codes: the server's own (INVALID_REQUEST, UNAUTHORIZED,
 * NOT_FOUND, SERVER_BUSY, PAYLOAD_TOO_LARGE, CONFLICT) and the library's
 * GenaiError codes (INVALID_ARGUMENT, OUT_OF_MEMORY, ENGINE_UNAVAILABLE, …).
 */
import { GenaiError } from "../errors";

export type ServerErrorCode = "INVALID_REQUEST" | "UNAUTHORIZED" | "NOT_FOUND" | "SERVER_BUSY" | "PAYLOAD_TOO_LARGE" | "CONFLICT" | "BACKEND_ERROR";

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | null;
  constructor(status: number, code: ServerErrorCode | string, message: string, param: string | null = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

/** OpenAI's error `type` for an HTTP status. */
function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 429 || status === 503) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

// GenaiError codes → HTTP status
const STATUS: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  MODEL_NOT_FOUND: 404,
  INVALID_MODEL: 500,
  OUT_OF_MEMORY: 503,
  BUSY: 503,
  ABORTED: 499,
  DISPOSED: 503,
  ENGINE_UNAVAILABLE: 501,
  BACKEND_ERROR: 500,
};

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** ajv's first error as a 400 naming the field (a dotted path, as OpenAI's `param`). */
function validationError(errors: AjvError[], fallback = "invalid request"): HttpError {
  const e = errors[0];
  if (!e) return new HttpError(400, "INVALID_REQUEST", fallback);
  const at = e.instancePath.replace(/^\//, "").replaceAll("/", ".");
  if (e.keyword === "additionalProperties") {
    const field = at ? `${at}.${String(e.params.additionalProperty)}` : String(e.params.additionalProperty);
    return new HttpError(400, "INVALID_REQUEST", `unknown field ${field}: this server does not implement it`, field);
  }
  if (e.keyword === "required") {
    const field = at ? `${at}.${String(e.params.missingProperty)}` : String(e.params.missingProperty);
    return new HttpError(400, "INVALID_REQUEST", `${field} is required`, field);
  }
  return new HttpError(400, "INVALID_REQUEST", `${at || "body"} ${e.message ?? "is invalid"}`, at || null);
}

/** Any thrown value as an HttpError (a GenaiError keeps its code). */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof GenaiError) return new HttpError(STATUS[e.code] ?? 500, e.code, e.message);
  const fe = e as { statusCode?: number; code?: string; message?: string; validation?: AjvError[] };
  if (fe?.validation) return validationError(fe.validation, fe.message);
  if (fe?.statusCode === 413 || fe?.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new HttpError(413, "PAYLOAD_TOO_LARGE", "the request body is too large");
  if (fe?.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return new HttpError(fe.statusCode, "INVALID_REQUEST", fe.message ?? "invalid request");
  return new HttpError(500, "BACKEND_ERROR", e instanceof Error ? e.message : String(e));
}

export function errorBody(e: HttpError) {
  return { error: { message: e.message, type: errorType(e.status), code: e.code, param: e.param } };
}
