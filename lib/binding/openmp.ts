/**
 * OpenMP wait tuning for the CPU backend. On Linux ggml's CPU threads are
 * libgomp's (GCC's OpenMP), which throttles its spin-wait to 1,000 iterations
 * once the process has more OpenMP threads than CPUs (libgomp env.c,
 * gomp_throttled_spin_count_var). A Node process gets there as soon as two of
 * the addon's native threads have run decodes, each keeping its own OpenMP
 * team: from then on every barrier of every decode sleeps and wakes through
 * the kernel. Measured on 2 cores: stories260K generation fell from ~3,700 to
 * ~1,000 tokens/s for the rest of the process. With `OMP_WAIT_POLICY=ACTIVE`
 * and a bounded `GOMP_SPINCOUNT` libgomp spins that long even then: 30,000
 * spins (libgomp's estimate: ~0.3 ms), which kept single generations at
 * llama-bench's speed and two concurrent ones on 2 cores from starving each
 * other (300,000 did not).
 *
 * libgomp reads its environment once, when it is loaded: the addon links it,
 * so the variables are set just around the addon's first load and then
 * restored (child processes never see them). Not applied when the user set
 * either variable, when `GENAI_NATIVE_OMP_TUNING=0`, off Linux, when libgomp
 * was already loaded by someone else, or when the addon is first loaded in a
 * worker_thread (whose process.env is its own copy, not the C environment).
 */
export const OMP_TUNING = Object.freeze({ OMP_WAIT_POLICY: "ACTIVE", GOMP_SPINCOUNT: "30000" });

/** Runs `load` with OMP_TUNING in the environment where it applies (see above), then restores it. */
export function withOpenMpTuning<T>(load: () => T): T {
  const env = process.env;
  const apply = process.platform === "linux" && env.GENAI_NATIVE_OMP_TUNING !== "0" && env.OMP_WAIT_POLICY === undefined && env.GOMP_SPINCOUNT === undefined;
  if (!apply) return load();
  Object.assign(env, OMP_TUNING);
  try {
    return load();
  } finally {
    delete env.OMP_WAIT_POLICY;
    delete env.GOMP_SPINCOUNT;
  }
}
