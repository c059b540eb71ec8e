/**
 * Finds and loads genai_native.node once per thread, and hands it the
 * GenaiError class. Lookup order: `GENAI_NATIVE_ADDON`; this package's
 * build/Release or prebuilds/<platform>-<arch> (node-gyp-build's rules);
 * the optional platform package `@genai-native/<platform>-<arch>`. Inside a
 * packaged Electron app each of these is read from its app.asar.unpacked copy.
 * Nothing else in lib/ touches the addon's raw exports except through
 * {@link native}.
 */
import fs from "node:fs";
import path from "node:path";
import nodeGypBuild from "node-gyp-build";
import { withOpenMpTuning } from "./openmp";
import { ERROR_CODES, GenaiError } from "../errors";
import { onAbort } from "../util/abort";
import { addonLoadHelp } from "./install-help";
import type { Addon, CancelToken } from "./types";

/** The package root: the nearest folder above this file whose package.json is genai-native's. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg)) {
      try {
        if (JSON.parse(fs.readFileSync(pkg, "utf8")).name === "genai-native") return dir;
      } catch {
        // keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new GenaiError("ENGINE_UNAVAILABLE", "cannot find the genai-native package root");
    dir = up;
  }
}

/**
 * Where the addon's files really are. Inside a packaged Electron app the
 * package sits in `resources/app.asar/...`, but native binaries cannot load
 * from an asar archive: packagers unpack them to `app.asar.unpacked/...`
 * (electron-builder `asarUnpack`, Electron Forge's auto-unpack-natives), so
 * that path is used when it exists.
 */
export function addonRoot(root: string): string {
  const marker = `app.asar${path.sep}`;
  const at = root.indexOf(marker);
  if (at < 0) return root;
  const unpacked = root.slice(0, at) + `app.asar.unpacked${path.sep}` + root.slice(at + marker.length);
  return fs.existsSync(unpacked) ? unpacked : root;
}

/**
 * The folder of an installed optional package `@genai-native/<name>` (the
 * per-platform binary packages, see README "Prebuilt binaries"), its
 * app.asar.unpacked copy inside an Electron app; undefined when not installed.
 */
export function platformPackageDir(name: string): string | undefined {
  try {
    return addonRoot(path.dirname(require.resolve(`@genai-native/${name}/package.json`)));
  } catch {
    return undefined;
  }
}

let cached: Addon | undefined;
let cachedPath: string | undefined;

/**
 * The .node file {@link native} loads.
 * @throws Error (node-gyp-build's) when there is none
 */
export function nativeAddonPath(): string {
  if (cachedPath) return cachedPath;
  if (process.env.GENAI_NATIVE_ADDON) {
    cachedPath = process.env.GENAI_NATIVE_ADDON;
    return cachedPath;
  }
  try {
    cachedPath = nodeGypBuild.resolve(addonRoot(packageRoot()));
  } catch (e) {
    const pkg = platformPackageDir(`${process.platform}-${process.arch}`);
    if (!pkg) throw e;
    cachedPath = nodeGypBuild.resolve(pkg);
  }
  return cachedPath;
}

/**
 * The addon, loaded once per thread (main thread, each worker_thread).
 * @throws GenaiError ENGINE_UNAVAILABLE when no binary loads; its message says how to get one.
 */
export function native(): Addon {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = withOpenMpTuning(() => require(nativeAddonPath()) as Addon);
    addon.init(GenaiError, ERROR_CODES);
    // process.exit() while a generation runs: stop native threads before
    // exit() tears down the engine's statics under them.
    process.once("exit", () => addon.shutdown());
    cached = addon;
  } catch (e) {
    if (e instanceof GenaiError) throw e;
    throw new GenaiError("ENGINE_UNAVAILABLE", addonLoadHelp(e), { cause: e });
  }
  return cached;
}

/**
 * Runs `fn` with a fresh native cancel token that aborting `signal` cancels;
 * the listener is removed when `fn` settles. With `rejectOnAbort` the
 * returned promise rejects with ABORTED as soon as the signal aborts, not when
 * the native work has stopped (for bounded work the caller need not wait for). The one signal → cancel-token
 * bridge of the API.
 */
export async function withCancelToken<T>(
  signal: AbortSignal | undefined,
  fn: (token: CancelToken) => Promise<T>,
  options: { rejectOnAbort?: string } = {},
): Promise<T> {
  const token = new (native().CancelToken)();
  if (options.rejectOnAbort === undefined) {
    const detach = onAbort(signal, () => token.cancel());
    try {
      return await fn(token);
    } finally {
      detach();
    }
  }
  // `rejectOnAbort`: the signal rejects at once with ABORTED (that message); the
  // native work, cancelled through the token, ends in the background
  const work = fn(token);
  return new Promise<T>((resolve, reject) => {
    const detach = onAbort(signal, () => {
      token.cancel();
      work.catch(() => undefined);
      reject(new GenaiError("ABORTED", options.rejectOnAbort as string));
    });
    work.then(
      (r) => {
        detach();
        resolve(r);
      },
      (e: unknown) => {
        detach();
        reject(e);
      },
    );
  });
}
