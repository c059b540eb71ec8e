/**
 * What to tell a user whose genai_native.node does not load: the message body
 * of the loader's ENGINE_UNAVAILABLE error, and the source build's needs that
 * scripts/install.mjs prints when that build fails. The commands named here
 * are those that work from an app's folder (`npm run build:native` only works
 * inside genai-native's own repository).
 *
 * npm 11 records which dependencies may run install scripts in the app's
 * package.json `allowScripts` (`npm install-scripts approve <pkg>`, alias
 * `npm approve-scripts`). npm 11 lists unapproved scripts after an install;
 * they are skipped with `--ignore-scripts`, when denied (`false`), under
 * `strict-allow-scripts` (which fails the install), and by default in later
 * npm releases. pnpm 10 skips them until `pnpm approve-builds`.
 */

/** The package as apps depend on it. */
const PKG = "genai-native";

/** What a build from source needs (the same list as README "Set up and test"). */
export const SOURCE_BUILD_NEEDS =
  "The source build needs a C++17 compiler (g++ or clang; Visual Studio Build Tools on Windows, Xcode's command-line tools on macOS), " +
  "CMake ≥ 3.18, git, and network access to the npm registry (llama.cpp's source comes from a pinned npm tarball, see llama-source.json); " +
  "ccache and ninja make it faster. It takes several minutes.";

/** The platform package that carries this machine's prebuilt binaries. */
export function platformPackageName(platform: string = process.platform, arch: string = process.arch): string {
  return `@genai-native/${platform}-${arch}`;
}

/** The commands, one per line, that get a working addon into an app. */
export function installCommands(): string[] {
  return [
    `  npm install-scripts approve ${PKG}   # npm 11: allow its install script (alias: npm approve-scripts ${PKG}; pnpm: pnpm approve-builds)`,
    `  npm rebuild ${PKG}                   # runs it: takes the prebuilt binary when one matches, else builds from source`,
    `  (global installs and npx: npm install -g --allow-scripts=${PKG} ${PKG})`,
  ];
}

function message(cause: unknown): string {
  if (cause instanceof Error) return cause.message.split("\n")[0];
  return String(cause);
}

/**
 * The message of the ENGINE_UNAVAILABLE error thrown when genai_native.node
 * cannot be loaded: what failed, and the commands that work from an app.
 */
export function addonLoadHelp(cause: unknown): string {
  const why = message(cause);
  const missing = /No native build was found/i.test(why);
  const platform = `${process.platform}-${process.arch}`;
  const lines = [
    missing
      ? `genai-native's addon is not installed: no prebuilt binary for ${platform} (the optional package ${platformPackageName()} is not installed, or has none for this libc) and no source build (${why}).`
      : `genai-native's addon could not be loaded (${why}).`,
    missing
      ? "Its install script builds one from source, but it did not run (install scripts not approved, --ignore-scripts) or did not finish. From your app's folder:"
      : "Rebuild it from source (GENAI_NATIVE_BUILD_FROM_SOURCE=1 skips the prebuilt binary). From your app's folder:",
    ...(missing ? installCommands() : [`  GENAI_NATIVE_BUILD_FROM_SOURCE=1 npm rebuild ${PKG}   # after npm install-scripts approve ${PKG} (npm 11)`]),
    SOURCE_BUILD_NEEDS,
    "Inside genai-native's own repository: npm run build:native.",
  ];
  return lines.join("\n");
}
