import { afterEach, describe, expect, it, vi } from "vitest";
import { GenaiError } from "../../lib/errors";
import { JobQueue } from "../../lib/orchestrator/queue";
import { JobRegistry, resultSize } from "../../lib/orchestrator/registry";

const tick = () => new Promise((r) => setTimeout(r, 0));

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

/** A registry with a settable clock and no sweep timer. */
function manual(options: ConstructorParameters<typeof JobRegistry>[0] = {}) {
  const clock = { now: 1_000 };
  const reg = new JobRegistry({ sweepIntervalMs: 0, now: () => clock.now, ...options });
  return { reg, clock };
}

const bad = (f: () => unknown) => expect(f).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));

describe("JobRegistry: records", () => {
  it("create, update, get, list, remove", () => {
    const { reg, clock } = manual();
    const a = reg.create("image");
    expect(a).toEqual({ id: a.id, kind: "image", status: "pending", createdAt: 1000, updatedAt: 1000 });
    const b = reg.create("llm.complete", "custom-id");
    expect(b.id).toBe("custom-id");
    bad(() => reg.create("x", "custom-id")); // taken

    clock.now = 1200;
    const running = reg.update(a.id, { status: "running", progress: { step: 1, steps: 20 } });
    expect(running).toMatchObject({ status: "running", progress: { step: 1, steps: 20 }, updatedAt: 1200, startedAt: 1200, createdAt: 1000 });
    clock.now = 1500;
    const done = reg.update(a.id, { status: "done", result: "ok" });
    expect(done).toMatchObject({ status: "done", result: "ok", startedAt: 1200, endedAt: 1500, updatedAt: 1500 });

    expect(reg.list().map((r) => r.id)).toEqual([a.id, "custom-id"]);
    expect(reg.list({ status: "done" }).map((r) => r.id)).toEqual([a.id]);
    expect(reg.list({ status: ["pending", "running"] }).map((r) => r.id)).toEqual(["custom-id"]);
    expect(reg.list({ kind: "llm.complete" }).map((r) => r.id)).toEqual(["custom-id"]);
    expect(reg.list({ kind: "image", status: "pending" })).toEqual([]);

    expect(reg.remove(a.id)).toBe(true);
    expect(reg.remove(a.id)).toBe(false);
    expect(reg.get(a.id)).toBeUndefined();
    expect(reg.size).toBe(1);
    reg.dispose();
  });

  it("get() returns a copy; update() ignores keys it does not own and validates", () => {
    const { reg } = manual();
    const r = reg.create("t");
    const copy = reg.get(r.id)!;
    copy.status = "done";
    copy.error = { code: "X", message: "y" };
    expect(reg.get(r.id)).toEqual({ id: r.id, kind: "t", status: "pending", createdAt: 1000, updatedAt: 1000 });
    reg.update(r.id, { id: "other", createdAt: 5, kind: "changed", bytes: 1e9 } as never);
    expect(reg.get(r.id)).toMatchObject({ id: r.id, createdAt: 1000, kind: "t" });
    expect(reg.resultBytes).toBe(0);
    bad(() => reg.update("nope", { status: "done" }));
    bad(() => reg.update(r.id, { status: "finished" as never }));
    bad(() => reg.update(r.id, { error: "boom" as never }));
    bad(() => reg.create(42 as never));
    expect(reg.get(r.id)?.status).toBe("pending");
    reg.dispose();
  });

  it("validates its options", () => {
    bad(() => new JobRegistry({ ttlMs: -1 }));
    bad(() => new JobRegistry({ maxRecords: 0 }));
    bad(() => new JobRegistry({ maxRecords: 2.5 }));
    bad(() => new JobRegistry({ maxResultBytes: Number.NaN }));
    bad(() => new JobRegistry({ sweepIntervalMs: 2 ** 31 }));
    bad(() => new JobRegistry({ sizeOf: 5 as never }));
    const ok = new JobRegistry({ ttlMs: Infinity, maxRecords: Infinity, maxResultBytes: Infinity, sweepIntervalMs: 0 });
    expect(ok.size).toBe(0);
  });
});

describe("JobRegistry: TTL", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sweep() removes finished records ttlMs after they ended (injected clock)", () => {
    const { reg, clock } = manual({ ttlMs: 5000 });
    const doneRec = reg.create("t");
    const errRec = reg.create("t");
    const pending = reg.create("t");
    const running = reg.create("t");
    reg.update(running.id, { status: "running" });
    reg.update(doneRec.id, { status: "done", result: "x" });
    clock.now += 3000;
    reg.update(errRec.id, { status: "error", error: { code: "BACKEND_ERROR", message: "bad" } }); // ended 3 s later
    clock.now += 1999; // doneRec ended 4999 ms ago
    expect(reg.sweep()).toBe(0);
    clock.now += 1; // 5000 ms
    expect(reg.sweep()).toBe(1);
    expect(reg.get(doneRec.id)).toBeUndefined();
    expect(reg.resultBytes).toBe(0);
    expect(reg.get(errRec.id)?.status).toBe("error");
    clock.now += 3000;
    expect(reg.sweep()).toBe(1);
    expect(reg.get(errRec.id)).toBeUndefined();
    clock.now += 1e9; // active records never expire
    expect(reg.sweep()).toBe(0);
    expect(reg.list().map((r) => r.id)).toEqual([pending.id, running.id]);
    reg.dispose();
  });

  it("the TTL counts from the end, not from creation", () => {
    const { reg, clock } = manual({ ttlMs: 1000 });
    const r = reg.create("t");
    clock.now += 10_000; // long job
    reg.update(r.id, { status: "cancelled" });
    clock.now += 999;
    expect(reg.sweep()).toBe(0);
    clock.now += 1;
    expect(reg.sweep()).toBe(1);
  });

  it("sweeps on its own timer, and dispose() stops it", () => {
    vi.useFakeTimers({ now: 0 });
    const reg = new JobRegistry({ ttlMs: 1000, sweepIntervalMs: 500 });
    const a = reg.create("t");
    reg.update(a.id, { status: "done" }); // ended at 0
    vi.advanceTimersByTime(999); // sweeps at 500: 500 ms old
    expect(reg.get(a.id)).toBeDefined();
    vi.advanceTimersByTime(1); // sweep at 1000: 1000 ms old
    expect(reg.get(a.id)).toBeUndefined();

    const b = reg.create("t");
    reg.update(b.id, { status: "done" });
    reg.dispose();
    vi.advanceTimersByTime(10_000);
    expect(reg.get(b.id)).toBeDefined(); // no more sweeps
    expect(reg.sweep()).toBe(1); // a manual one still works
  });

  it("the default sweep is every 60 s with a 5 minute TTL", () => {
    vi.useFakeTimers({ now: 0 });
    const reg = new JobRegistry();
    const r = reg.create("t");
    vi.advanceTimersByTime(1);
    reg.update(r.id, { status: "done" }); // ended at 1 ms: expires at 300 001
    vi.advanceTimersByTime(359_998); // sweeps at 60 000 … 300 000: not yet expired
    expect(reg.get(r.id)).toBeDefined();
    vi.advanceTimersByTime(1); // sweep at 360 000
    expect(reg.get(r.id)).toBeUndefined();
    reg.dispose();
  });

  it("its timer is unref()'d (never keeps the process alive) and cleared by dispose()", () => {
    const setSpy = vi.spyOn(globalThis, "setInterval");
    const clearSpy = vi.spyOn(globalThis, "clearInterval");
    try {
      const reg = new JobRegistry({ sweepIntervalMs: 1000 });
      expect(setSpy).toHaveBeenCalledTimes(1);
      const timer = setSpy.mock.results[0].value as NodeJS.Timeout;
      expect(timer.hasRef()).toBe(false);
      reg.dispose();
      expect(clearSpy).toHaveBeenCalledWith(timer);
      setSpy.mockClear();
      new JobRegistry({ sweepIntervalMs: 0 }).dispose();
      expect(setSpy).not.toHaveBeenCalled();
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
    }
  });
});

describe("JobRegistry: bounds", () => {
  it("maxRecords: the finished record that ended first goes first; pending and running never", () => {
    const { reg, clock } = manual({ maxRecords: 4 });
    const running = reg.create("t");
    reg.update(running.id, { status: "running" });
    const pending = reg.create("t");
    const a = reg.create("t");
    const b = reg.create("t");
    clock.now++;
    reg.update(b.id, { status: "done" }); // b ends before a although created after it
    clock.now++;
    reg.update(a.id, { status: "error", error: { code: "BACKEND_ERROR", message: "x" } });
    clock.now++;
    const c = reg.create("t"); // 5 records > 4: evict b
    expect(reg.size).toBe(4);
    expect(reg.get(b.id)).toBeUndefined();
    expect(reg.get(a.id)).toBeDefined();
    reg.create("t"); // evict a
    expect(reg.get(a.id)).toBeUndefined();
    // only active records left: the bound is exceeded rather than evicting them
    reg.create("t");
    expect(reg.size).toBe(5);
    expect(reg.get(running.id)?.status).toBe("running");
    expect(reg.get(pending.id)?.status).toBe("pending");
    expect(reg.get(c.id)?.status).toBe("pending");
    // once something finishes, the registry shrinks back to the bound
    reg.update(c.id, { status: "done" });
    expect(reg.size).toBe(4);
    expect(reg.get(c.id)).toBeUndefined();
  });

  it("maxResultBytes: oldest finished evicted first, running never, bytes accounted on replace and remove", () => {
    const { reg, clock } = manual({ maxResultBytes: 100 });
    const running = reg.create("t");
    reg.update(running.id, { status: "running", result: "r".repeat(30) }); // partial result of a running job counts, but it stays
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      clock.now++;
      const r = reg.create("t");
      reg.update(r.id, { status: "done", result: Buffer.alloc(20) });
      ids.push(r.id);
    }
    expect(reg.resultBytes).toBe(90);
    clock.now++;
    const big = reg.create("t");
    reg.update(big.id, { status: "done", result: new Float32Array(10) }); // 40 bytes → 130 > 100: evict ids[0], ids[1]
    expect(reg.resultBytes).toBe(90);
    expect(ids.map((id) => reg.get(id) !== undefined)).toEqual([false, false, true]);
    expect(reg.get(running.id)?.result).toBe("r".repeat(30));
    // replacing a result re-measures it
    reg.update(ids[2], { result: "" });
    expect(reg.resultBytes).toBe(70);
    reg.remove(big.id);
    expect(reg.resultBytes).toBe(30);
    // a result larger than the bound by itself cannot be kept
    clock.now++;
    const huge = reg.create("t");
    reg.update(huge.id, { status: "done", result: Buffer.alloc(101) });
    expect(reg.get(huge.id)).toBeUndefined();
    expect(reg.get(ids[2])).toBeUndefined(); // older finished ones went first
    expect(reg.get(running.id)).toBeDefined();
    expect(reg.resultBytes).toBe(30);
  });

  it("measures results: bytes by byteLength, strings as UTF-8, objects and image batches by their fields; or sizeOf", () => {
    expect(resultSize(Buffer.alloc(7))).toBe(7);
    expect(resultSize(new Float64Array(3))).toBe(24);
    expect(resultSize(new ArrayBuffer(5))).toBe(5);
    expect(resultSize("héllo")).toBe(6);
    expect(resultSize({ text: "abc", tokens: 12, stopReason: "eos" })).toBe(3 + 8 + 3);
    expect(
      resultSize([
        { png: Buffer.alloc(1000), width: 64, height: 64, seed: 1 },
        { png: Buffer.alloc(500), width: 64, height: 64, seed: 2 },
      ]),
    ).toBe(1500 + 6 * 8);
    const shared = Buffer.alloc(10);
    expect(resultSize({ a: shared, b: shared })).toBe(10);
    const cyclic: Record<string, unknown> = { s: "ab" };
    cyclic.self = cyclic;
    expect(resultSize(cyclic)).toBe(2);
    expect(resultSize(null)).toBe(0);

    const { reg } = manual({ sizeOf: (r) => (r as { n: number }).n });
    const r = reg.create("t");
    reg.update(r.id, { status: "done", result: { n: 1234 } });
    expect(reg.resultBytes).toBe(1234);
    const fallback = manual({
      sizeOf: () => {
        throw new Error("bad measure");
      },
    }).reg;
    const f = fallback.create("t");
    fallback.update(f.id, { status: "done", result: "abcd" });
    expect(fallback.resultBytes).toBe(4);
  });
});

describe("JobRegistry: track()", () => {
  it("mirrors a queued job: pending → running → done with its result and timestamps", async () => {
    let now = 5000;
    const q = new JobQueue({ now: () => now });
    const reg = new JobRegistry({ sweepIntervalMs: 0, now: () => now });
    const g = gate();
    const job = q.enqueue({
      engine: "e",
      run: async () => {
        await g.p;
        return Buffer.alloc(10);
      },
    });
    const rec = reg.track(job, "image");
    expect(rec).toMatchObject({ id: job.id, kind: "image", status: "pending" });
    now = 6000;
    await tick();
    expect(reg.get(job.id)).toMatchObject({ status: "running", startedAt: 6000 });
    reg.update(job.id, { progress: { step: 3, steps: 4 } }); // progress is the caller's
    now = 7000;
    g.open();
    await job.promise;
    const done = reg.get(job.id)!;
    expect(done).toMatchObject({ status: "done", startedAt: 6000, endedAt: 7000, progress: { step: 3, steps: 4 } });
    expect(Buffer.isBuffer(done.result) && done.result.length).toBe(10);
    expect(reg.resultBytes).toBe(10);
    bad(() => reg.track(job, "image")); // same id twice
    reg.dispose();
  });

  it("mirrors a failure as a typed error, and cancellation while queued or running", async () => {
    const q = new JobQueue();
    const reg = new JobRegistry({ sweepIntervalMs: 0 });
    const g = gate();
    const failed = q.enqueue({
      engine: "e",
      run: async () => {
        await g.p;
        throw new GenaiError("OUT_OF_MEMORY", "does not fit");
      },
    });
    const queued = q.enqueue({ engine: "e", run: async () => 1 });
    reg.track(failed, "llm.complete");
    reg.track(queued, "llm.complete");
    await tick();
    queued.cancel("changed my mind");
    expect(reg.get(queued.id)).toMatchObject({ status: "cancelled", error: { code: "ABORTED", message: "changed my mind" } });
    expect(reg.get(queued.id)?.startedAt).toBeUndefined();
    g.open();
    await failed.promise.catch(() => undefined);
    expect(reg.get(failed.id)).toMatchObject({ status: "error", error: { code: "OUT_OF_MEMORY", message: "does not fit" } });
    expect(reg.get(failed.id)?.result).toBeUndefined();

    const running = q.enqueue({ engine: "e", run: (s) => new Promise((_, rej) => s.addEventListener("abort", () => rej(s.reason))) });
    reg.track(running, "image");
    await tick();
    expect(reg.get(running.id)?.status).toBe("running");
    running.cancel();
    await running.promise.catch(() => undefined);
    expect(reg.get(running.id)).toMatchObject({ status: "cancelled", error: { code: "ABORTED" } });
    expect(reg.get(running.id)?.endedAt).toBeGreaterThanOrEqual(reg.get(running.id)!.startedAt!);
    reg.dispose();
  });

  it("tracks a job that already ended, and ignores a removed record's later changes", async () => {
    const warn = vi.spyOn(process, "emitWarning");
    const q = new JobQueue();
    const reg = new JobRegistry({ sweepIntervalMs: 0 });
    const pre = q.enqueue({ engine: "e", signal: AbortSignal.abort(), run: async () => 1 });
    expect(reg.track(pre, "t")).toMatchObject({ status: "cancelled", error: { code: "ABORTED" } });

    const g = gate();
    const job = q.enqueue({
      engine: "e",
      run: async () => {
        await g.p;
        return "late";
      },
    });
    reg.track(job, "t");
    await tick();
    expect(reg.remove(job.id)).toBe(true);
    g.open();
    expect(await job.promise).toBe("late");
    expect(reg.get(job.id)).toBeUndefined(); // not re-created
    expect(reg.resultBytes).toBe(0);
    expect(warn).not.toHaveBeenCalled(); // the mirror did not throw into the queue
    warn.mockRestore();
    reg.dispose();
  });
});
