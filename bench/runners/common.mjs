// Shared by the benchmark runners: argument parsing and a seeded prompt.
export function args() {
  return JSON.parse(process.argv[2]);
}

/** `n` pseudo-random token ids in [3, vocab), reproducible (mulberry32). */
export function randomTokens(n, vocab, seed = 1) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Int32Array.from({ length: n }, () => 3 + Math.floor(next() * (vocab - 3)));
}

export function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}
