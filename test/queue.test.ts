import { describe, expect, it } from "vitest";
import { GenaiError } from "../lib/errors";
import { JobQueue, type Priority } from "../lib/orchestrator/queue";
import { JobRegistry } from "../lib/orchestrator/registry";

const tick = () => new Promise((r) => setTimeout(r, 0));

/** A job body that waits until released. */
function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe("JobQueue", () => {
  it("runs by priority, FIFO within a priority", async () => {
    const q = new JobQueue();
    const order: string[] = [];
    const g = gate();
    const first = q.enqueue({ engine: "e", run: async () => { order.push("first"); await g.p; } });
    await tick();
    const specs: [string, Priority][] = [["b1", "background"], ["i1", "interactive"], ["p1", "preload"], ["im1", "immediate"], ["i2", "interactive"], ["b2", "background"], ["im2", "immediate"]];
    const jobs = specs.map(([name, priority]) => q.enqueue({ engine: "e", priority, run: async () => { order.push(name); } }));
    expect(jobs.map((j) => j.position())).toEqual([5, 2, 4, 0, 3, 6, 1]);
    g.open();
    await Promise.all([first.promise, ...jobs.map((j) => j.promise)]);
    expect(order).toEqual(["first", "im1", "im2", "i1", "i2", "p1", "b1", "b2"]);
  });

  it("ageing: a waiting background job overtakes newer interactive work", async () => {
    let now = 0;
    const q = new JobQueue({ ageingMs: 1000, now: () => now });
    const order: string[] = [];
    let g = gate();
    q.enqueue({ engine: "e", run: async () => { await g.p; } });
    await tick();
    const bg = q.enqueue({ engine: "e", priority: "background", run: async () => { order.push("bg"); } });
    // a stream of interactive jobs keeps arriving; after 2 s of waiting the background job ranks with them (0 + 2 = 2) and is older
    for (let i = 0; i < 3; i++) {
      now += 1000;
      q.enqueue({ engine: "e", priority: "interactive", run: async () => { order.push(`i${i}`); await tick(); } });
    }
    expect(bg.position()).toBe(0);
    g.open();
    await q.onIdle();
    expect(order[0]).toBe("bg");
    // without ageing it would have come last
    now = 0;
    const q2 = new JobQueue({ ageingMs: 1e9, now: () => now });
    const order2: string[] = [];
    g = gate();
    q2.enqueue({ engine: "e", run: async () => { await g.p; } });
    await tick();
    q2.enqueue({ engine: "e", priority: "background", run: async () => { order2.push("bg"); } });
    for (let i = 0; i < 3; i++) q2.enqueue({ engine: "e", priority: "interactive", run: async () => { order2.push(`i${i}`); } });
    g.open();
    await q2.onIdle();
    expect(order2).toEqual(["i0", "i1", "i2", "bg"]);
  });

  it("per-engine limits: a busy engine does not block another engine", async () => {
    const q = new JobQueue({ limits: { llm: 1, diffusion: 1, embed: 2 } });
    const g = gate();
    const running: string[] = [];
    q.enqueue({ engine: "llm", run: async () => { running.push("llm1"); await g.p; } });
    await tick(); // llm1 holds the llm engine's one slot
    q.enqueue({ engine: "llm", priority: "immediate", run: async () => { running.push("llm2"); } });
    q.enqueue({ engine: "diffusion", priority: "background", run: async () => { running.push("sd"); await g.p; } });
    q.enqueue({ engine: "embed", run: async () => { running.push("e1"); await g.p; } });
    q.enqueue({ engine: "embed", run: async () => { running.push("e2"); await g.p; } });
    q.enqueue({ engine: "embed", run: async () => { running.push("e3"); } });
    await tick();
    expect(running.sort()).toEqual(["e1", "e2", "llm1", "sd"]);
    expect(q.running()).toBe(4);
    expect(q.pending()).toBe(2);
    g.open();
    await q.onIdle();
    expect(running).toContain("llm2");
    expect(running).toContain("e3");
  });

  it("cancel while queued: removed, positions move up, promise rejects ABORTED", async () => {
    const q = new JobQueue();
    const g = gate();
    q.enqueue({ engine: "e", run: () => g.p });
    await tick();
    const a = q.enqueue({ engine: "e", run: async () => "a" });
    const b = q.enqueue({ engine: "e", run: async () => "b" });
    expect(b.position()).toBe(1);
    a.cancel();
    expect(a.status).toBe("cancelled");
    expect(b.position()).toBe(0);
    await expect(a.promise).rejects.toMatchObject({ code: "ABORTED" });
    g.open();
    expect(await b.promise).toBe("b");
    expect(b.position()).toBe(-1);
  });

  it("cancel while running aborts the run's signal; an AbortSignal does the same", async () => {
    const q = new JobQueue();
    let seen: AbortSignal | undefined;
    const job = q.enqueue({
      engine: "e",
      run: (signal) =>
        new Promise((_, reject) => {
          seen = signal;
          signal.addEventListener("abort", () => reject(new GenaiError("ABORTED", "stopped")));
        }),
    });
    await tick();
    expect(job.status).toBe("running");
    job.cancel();
    await expect(job.promise).rejects.toBeInstanceOf(GenaiError);
    expect(seen?.aborted).toBe(true);
    expect(job.status).toBe("cancelled");

    const ac = new AbortController();
    const viaSignal = q.enqueue({ engine: "e", signal: ac.signal, run: (signal) => new Promise((res) => signal.addEventListener("abort", () => res("finished anyway"))) });
    await tick();
    ac.abort();
    expect(await viaSignal.promise).toBe("finished anyway");
    expect(viaSignal.status).toBe("done"); // the run resolved: its result stands

    const pre = new AbortController();
    pre.abort();
    let ran = false;
    const never = q.enqueue({ engine: "e", signal: pre.signal, run: async () => { ran = true; } });
    await expect(never.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect(ran).toBe(false);
  });

  it("a failing run gives status error with a typed error; runs never start synchronously", async () => {
    const q = new JobQueue();
    let started = false;
    const job = q.enqueue({ engine: "e", run: async () => { started = true; throw Object.assign(new Error("boom"), { code: "OUT_OF_MEMORY" }); } });
    expect(started).toBe(false);
    await expect(job.promise).rejects.toMatchObject({ code: "OUT_OF_MEMORY", message: "boom" });
    expect(job.status).toBe("error");
    expect(job.error?.code).toBe("OUT_OF_MEMORY");
    expect(() => q.enqueue({ engine: "", run: async () => 1 })).toThrow(GenaiError);
    expect(() => q.enqueue({ engine: "e", priority: "urgent" as Priority, run: async () => 1 })).toThrow(GenaiError);
  });
});

describe("JobRegistry", () => {
  it("mirrors queued jobs: pending → running → done with result and timestamps", async () => {
    const q = new JobQueue();
    const reg = new JobRegistry({ sweepIntervalMs: 0 });
    const g = gate();
    const job = q.enqueue({ engine: "e", run: async () => { await g.p; return Buffer.alloc(10); } });
    const rec = reg.track(job, "image");
    expect(rec.status).toBe("pending");
    await tick();
    expect(reg.get(job.id)?.status).toBe("running");
    expect(reg.get(job.id)?.startedAt).toBeGreaterThan(0);
    g.open();
    await job.promise;
    const done = reg.get(job.id)!;
    expect(done.status).toBe("done");
    expect((done.result as Buffer).length).toBe(10);
    expect(done.endedAt).toBeGreaterThanOrEqual(done.startedAt!);
    expect(reg.resultBytes).toBe(10);
    const failed = q.enqueue({ engine: "e", run: async () => { throw new GenaiError("INVALID_ARGUMENT", "bad"); } });
    reg.track(failed, "image");
    await failed.promise.catch(() => undefined);
    expect(reg.get(failed.id)).toMatchObject({ status: "error", error: { code: "INVALID_ARGUMENT", message: "bad" } });
    reg.dispose();
  });

  it("expires finished records after the TTL (manual sweep, injected clock)", () => {
    let now = 1000;
    const reg = new JobRegistry({ ttlMs: 5000, sweepIntervalMs: 0, now: () => now });
    const a = reg.create("t");
    const b = reg.create("t");
    reg.update(a.id, { status: "done", result: "x" });
    now += 4999;
    expect(reg.sweep()).toBe(0);
    now += 1;
    expect(reg.sweep()).toBe(1);
    expect(reg.get(a.id)).toBeUndefined();
    expect(reg.get(b.id)?.status).toBe("pending"); // never expires while pending
    now += 1e9;
    expect(reg.sweep()).toBe(0);
    reg.dispose();
  });

  it("sweeps on its timer", async () => {
    const { vi } = await import("vitest");
    vi.useFakeTimers();
    try {
      const reg = new JobRegistry({ ttlMs: 1000, sweepIntervalMs: 500 });
      const r = reg.create("t");
      reg.update(r.id, { status: "cancelled" });
      vi.advanceTimersByTime(600);
      expect(reg.get(r.id)).toBeDefined();
      vi.advanceTimersByTime(1000);
      expect(reg.get(r.id)).toBeUndefined();
      reg.dispose();
    } finally {
      vi.useRealTimers();
    }
  });

  it("is bounded in count and bytes: oldest finished go first, running never", () => {
    let now = 0;
    const reg = new JobRegistry({ maxRecords: 3, maxResultBytes: 100, sweepIntervalMs: 0, now: () => now });
    const running = reg.create("t");
    reg.update(running.id, { status: "running" });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      now++;
      const r = reg.create("t");
      reg.update(r.id, { status: "done", result: "x".repeat(10) });
      ids.push(r.id);
    }
    expect(reg.size).toBe(3);
    expect(reg.get(ids[0])).toBeUndefined(); // the oldest finished one
    expect(reg.get(running.id)?.status).toBe("running");
    now++;
    const big = reg.create("t");
    reg.update(big.id, { status: "done", result: Buffer.alloc(95) });
    expect(reg.resultBytes).toBeLessThanOrEqual(100);
    expect(reg.get(big.id)).toBeDefined();
    expect(reg.get(running.id)).toBeDefined();
    expect(reg.list({ status: "done" }).map((r) => r.id)).toEqual([big.id]);
    reg.dispose();
  });
});
