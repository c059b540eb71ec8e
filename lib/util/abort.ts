/** The one AbortSignal bridge of the API: every place that reacts to a caller's signal uses it. */

/**
 * Calls `onAbort` once when `signal` aborts — at once (synchronously) when it
 * already has — and returns a function that detaches the listener (call it
 * when the work ends, so long-lived signals do not collect listeners).
 * Without a signal it does nothing.
 */
export function onAbort(signal: AbortSignal | undefined, onAbort: () => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    onAbort();
    return () => undefined;
  }
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}
