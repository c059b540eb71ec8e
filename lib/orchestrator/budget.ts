/** Memory budgets per device: the free memory ggml reports, less a safety padding. */
import { systemInfo } from "../system/index";

/**
 * The padding kept free on a device, bytes: min(8 % of its total, 1.6 GB),
 * node-llama-cpp's padding for VRAM (its `gpu` memory reserve), for drivers,
 * the desktop and other processes.
 */
export function safetyPadding(totalBytes: number): number {
  return Math.min(0.08 * totalBytes, 1.6e9);
}

/** Each registered device's budget in bytes: free memory minus {@link safetyPadding}, at least 0. */
export function defaultBudgets(): Record<string, number> {
  return Object.fromEntries(systemInfo().devices.map((d) => [d.name, Math.max(0, d.freeBytes - safetyPadding(d.totalBytes))]));
}
