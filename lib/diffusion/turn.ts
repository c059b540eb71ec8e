/**
 * The process-wide sd.cpp turn. stable-diffusion.cpp's progress, preview and
 * log callbacks are process-global, so one sd.cpp operation (a generation, an
 * upscale, a load of either) runs at a time in the process; every call into
 * sd.cpp from lib/ goes through {@link runExclusive}. The C++ side keeps a
 * mutex around each operation (native/diffusion/sd_ops.cpp OpScope) as the
 * backstop for callers that bypass this (another worker_thread's copy of the
 * API has its own turn).
 */
let generationChain: Promise<unknown> = Promise.resolve();

/**
 * Runs `fn` after every sd.cpp operation queued before it in this process
 * (generations, upscales), and holds the next ones until it settles.
 * @internal
 */
export function runExclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = generationChain
    .then(
      () => undefined,
      () => undefined,
    )
    .then(fn);
  generationChain = run.catch(() => undefined);
  return run;
}
