// The OpenMP wait tuning (lib/binding/openmp.ts) reaches libgomp: libgomp
// prints the settings it read at load time with OMP_DISPLAY_ENV=VERBOSE, in a
// child process that loads the addon. Its speed effect is measured by
// `npm run bench:llm` (two contexts in one process), not here.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..", "..");

function loadAndShow(env: Record<string, string | undefined>): { omp: string; leaked: string } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, OMP_DISPLAY_ENV: "VERBOSE", ...env };
  for (const k of ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "GENAI_NATIVE_OMP_TUNING"]) if (env[k] === undefined) delete childEnv[k];
  const r = spawnSync(
    process.execPath,
    [
      "-e",
      `require(${JSON.stringify(root)}).initBackends().then(() => console.log("env:" + JSON.stringify([process.env.OMP_WAIT_POLICY ?? null, process.env.GOMP_SPINCOUNT ?? null])))`,
    ],
    { cwd: root, encoding: "utf8", env: childEnv, timeout: 60_000 },
  );
  expect(r.status, r.stderr).toBe(0);
  return { omp: r.stderr, leaked: r.stdout.match(/env:(.*)/)?.[1] ?? "" };
}

describe.skipIf(process.platform !== "linux")("OpenMP wait tuning (Linux, libgomp)", () => {
  it("libgomp reads ACTIVE with a 30,000 spin count; the variables do not stay in process.env", () => {
    const { omp, leaked } = loadAndShow({});
    expect(omp).toMatch(/OMP_WAIT_POLICY = 'ACTIVE'/);
    expect(omp).toMatch(/GOMP_SPINCOUNT = '30000'/);
    expect(leaked).toBe("[null,null]"); // child processes of the app never see them
  });

  it("a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT, or GENAI_NATIVE_OMP_TUNING=0, is left alone", () => {
    expect(loadAndShow({ OMP_WAIT_POLICY: "PASSIVE" }).omp).toMatch(/GOMP_SPINCOUNT = '0'/);
    expect(loadAndShow({ GOMP_SPINCOUNT: "12345" }).omp).toMatch(/GOMP_SPINCOUNT = '12345'/);
    const off = loadAndShow({ GENAI_NATIVE_OMP_TUNING: "0" }).omp;
    expect(off).toMatch(/OMP_WAIT_POLICY = 'PASSIVE'/);
    expect(off).toMatch(/GOMP_SPINCOUNT = '300000'/);
  });
});
