import path from "node:path";
import { defineConfig } from "vitest/config";

// Tests find real models through the project's resolver: $GENAI_NATIVE_MODELS,
// defaulting to the shared test-model folder beside this checkout.
const models =
  process.env.GENAI_NATIVE_MODELS ?? path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), "..", "shared", "models");

// On a device backend (CI runs the suite a second time on Vulkan through lavapipe,
// a CPU emulation of a GPU several times slower than the CPU backend) every test
// gets three times the CPU's time limit.
const onDevice = (process.env.GENAI_NATIVE_DEVICE ?? "cpu").toLowerCase() !== "cpu";
const scale = onDevice ? 3 : 1;

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // type tests of the public API (test/types/*.test-d.ts): tsc checks them as part of every run
    typecheck: { enabled: true, include: ["test/types/**/*.test-d.ts"], tsconfig: "test/types/tsconfig.json" },
    env: { GENAI_NATIVE_MODELS: models },
    testTimeout: 120_000 * scale,
    hookTimeout: 300_000 * scale,
    // Native work uses the cores; files run one at a time so timings (event-loop delay) are not disturbed.
    fileParallelism: false,
    pool: "forks",
  },
});
