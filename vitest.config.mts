import path from "node:path";
import { defineConfig } from "vitest/config";

// Tests find real models through the project's resolver: $GENAI_NATIVE_MODELS,
// defaulting to the shared test-model folder beside this checkout.
const models = process.env.GENAI_NATIVE_MODELS ?? path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), "..", "shared", "models");

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    env: { GENAI_NATIVE_MODELS: models },
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Native work uses the cores; files run one at a time so timings (event-loop delay) are not disturbed.
    fileParallelism: false,
    pool: "forks",
  },
});
