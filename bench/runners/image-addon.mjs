// genai-native's diffusion engine in a fresh process (bench/image.mjs): one
// generation's seconds per sampling step (mean of steps 2..n: sd.cpp's own
// step times from the progress events' stepMs, measured as sd-cli's s/it
// are), and the process's peak resident memory (Linux VmHWM) over its
// baseline before the model loaded.
import fs from "node:fs";
import { createRequire } from "node:module";
import { args, report } from "./common.mjs";

const a = args();
const g = createRequire(import.meta.url)(a.root);

/** A field of /proc/self/status in bytes (Linux), else null. */
function statusBytes(field) {
  try {
    const m = fs.readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const baseline = statusBytes("VmRSS");
const sd = await g.DiffusionModel.load({ ...a.load, threads: a.threads });
const job = sd.generate(a.params);
const stepAt = [];
const stepMs = []; // sd.cpp's own step times (ImageProgress.stepMs): the figure sd-cli prints as s/it
job.on("progress", (p) => {
  if (p.stage !== "diffusion") return;
  stepAt.push(performance.now());
  if (p.stepMs !== undefined && p.step > 1) stepMs.push(p.stepMs / 1000);
});
const t0 = performance.now();
await job.done;
const totalMs = performance.now() - t0;
const peak = statusBytes("VmHWM");
await sd.dispose();
// steps 2..n: sd.cpp's times when the events carry them, else the time between the events as JavaScript saw them
const deltas = stepMs.length ? stepMs : stepAt.slice(1).map((t, i) => (t - stepAt[i]) / 1000);
report({
  secondsPerStep: deltas.length ? deltas.reduce((s, x) => s + x, 0) / deltas.length : Number.NaN,
  stepTiming: stepMs.length ? "engine" : "events",
  totalMs,
  peakRssBytes: peak,
  baselineRssBytes: baseline,
});
