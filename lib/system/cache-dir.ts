/** genai-native's per-user cache folder (downloaded models, backend probe verdicts). */
import os from "node:os";
import path from "node:path";

/**
 * `$GENAI_NATIVE_CACHE`, else the platform's user cache dir + `genai-native`:
 * `%LOCALAPPDATA%` on Windows, `~/Library/Caches` on macOS,
 * `$XDG_CACHE_HOME` or `~/.cache` elsewhere (the XDG Base Directory spec).
 */
export function genaiCacheDir(): string {
  if (process.env.GENAI_NATIVE_CACHE) return process.env.GENAI_NATIVE_CACHE;
  const home = os.homedir();
  const base =
    process.platform === "win32"
      ? (process.env.LOCALAPPDATA ?? path.join(home, "AppData", "Local"))
      : process.platform === "darwin"
        ? path.join(home, "Library", "Caches")
        : (process.env.XDG_CACHE_HOME ?? path.join(home, ".cache"));
  return path.join(base, "genai-native");
}

/** The model cache: $GENAI_NATIVE_CACHE, else {@link genaiCacheDir} + /models (the resolver's and the model store's default). */
export function modelCacheDir(): string {
  if (process.env.GENAI_NATIVE_CACHE) return process.env.GENAI_NATIVE_CACHE;
  return path.join(genaiCacheDir(), "models");
}
