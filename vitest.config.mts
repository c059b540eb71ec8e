import path from "node:path";
import { defineConfig } from "vitest/config";

// Tests find real models through the project's resolver: $GENAI_NATIVE_MODELS,
// defaulting to the shared test-model folder beside this checkout.
const models =
  process.env.GENAI_NATIVE_MODELS ?? path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), "..", "shared", "models");

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // type tests of the public API (test/types/*.test-d.ts): tsc checks them as part of every run
    typecheck: { enabled: true, include: ["test/types/**/*.test-d.ts"], tsconfig: "test/types/tsconfig.json" },
    env: { GENAI_NATIVE_MODELS: models },
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Native work uses the cores; files run one at a time so timings (event-loop delay) are not disturbed.
    fileParallelism: false,
    pool: "forks",
  },
});
