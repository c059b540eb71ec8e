// JobQueue: a running job giving its slot back between units of work
// (RunControl.yield) and waitingAbove(), what it checks before it does.
import { describe, expect, it } from "vitest";
import { JobQueue, type JobStatus, type QueuedJob, type RunControl } from "../../lib/orchestrator/queue";

const tick = () => new Promise((r) => setTimeout(r, 0));

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

function statuses<T>(job: QueuedJob<T>): JobStatus[] {
  const seen: JobStatus[] = [job.status];
  job.onStatus((j) => seen.push(j.status));
  return seen;
}

describe("JobQueue: yielding", () => {
  it("a running job yields between units: the higher-priority job runs, then the yielder goes on ahead of later jobs of its level", async () => {
    const q = new JobQueue();
    const order: string[] = [];
    const unit = [gate(), gate(), gate()];
    const started = gate();
    let control!: RunControl;
    const batch = q.enqueue({
      engine: "e",
      priority: "background",
      run: async (_signal, c) => {
        control = c;
        for (let i = 0; i < 3; i++) {
          if (i === 0) started.open();
          await unit[i].p;
          order.push(`unit ${i}`);
          if (q.waitingAbove("e", "background").length > 0) {
            order.push("yield");
            await c.yield();
            order.push("resumed");
          }
        }
        return "batch";
      },
    });
    const seen = statuses(batch);
    await started.p;
    expect(q.waitingAbove("e", "background")).toEqual([]);
    const later = q.enqueue({ engine: "e", priority: "background", run: async () => void order.push("later background") });
    const inter = q.enqueue({ engine: "e", priority: "interactive", run: async () => void order.push("interactive") });
    await tick();
    // own priorities only; the same-level job does not count; another engine does not either
    expect(q.waitingAbove("e", "background").map((j) => j.id)).toEqual([inter.id]);
    expect(q.waitingAbove("e", "interactive")).toEqual([]);
    expect(q.waitingAbove("other", "background")).toEqual([]);
    unit[0].open();
    await inter.promise;
    expect(order).toEqual(["unit 0", "yield", "interactive"]);
    unit[1].open();
    unit[2].open();
    expect(await batch.promise).toBe("batch");
    await later.promise;
    expect(order).toEqual(["unit 0", "yield", "interactive", "resumed", "unit 1", "unit 2", "later background"]);
    expect(seen).toEqual(["pending", "running", "pending", "running", "done"]);
    expect(batch.startedAt).toBeLessThanOrEqual(inter.startedAt!);
    expect(q.running() + q.pending()).toBe(0);
    await expect(control.yield()).rejects.toMatchObject({ code: "INVALID_ARGUMENT" }); // not running any more
  });

  it("while the engine has a free slot, nothing waits above (the pending job starts by itself)", async () => {
    const q = new JobQueue({ limits: { e: 2 } });
    const g = gate();
    const bg = q.enqueue({ engine: "e", priority: "background", run: () => g.p });
    await tick();
    const inter = q.enqueue({ engine: "e", priority: "interactive", run: async () => "x" });
    expect(q.waitingAbove("e", "background")).toEqual([]);
    expect(await inter.promise).toBe("x");
    g.open();
    await bg.promise;
  });

  it("cancelling a job that yielded: its signal aborts, yield() rejects ABORTED, the run decides the result", async () => {
    const q = new JobQueue();
    const g = gate();
    const unit = gate();
    let signalAborted = false;
    let yieldError: unknown;
    const batch = q.enqueue({
      engine: "e",
      priority: "background",
      run: async (signal, c) => {
        await unit.p;
        await c.yield().catch((e: unknown) => {
          yieldError = e;
        });
        signalAborted = signal.aborted;
        throw yieldError;
      },
    });
    await tick();
    // takes the slot once the batch yields, so that the batch stays pending
    const blocker = q.enqueue({ engine: "e", priority: "immediate", run: () => g.p });
    unit.open();
    await tick();
    expect(batch.status).toBe("pending");
    expect(blocker.status).toBe("running");
    expect(batch.position()).toBe(0);
    batch.cancel("stop");
    await expect(batch.promise).rejects.toMatchObject({ code: "ABORTED", message: "stop" });
    expect(yieldError).toMatchObject({ code: "ABORTED" });
    expect(signalAborted).toBe(true);
    expect(batch.status).toBe("cancelled");
    expect(q.pending()).toBe(0);
    g.open();
    await blocker.promise;
    await q.onIdle();
  });

  it("ageing of a yielded job counts from its yield, not from when it was first enqueued", async () => {
    let now = 0;
    const q = new JobQueue({ ageingMs: 100, now: () => now });
    const g = gate();
    const unit = gate();
    const order: string[] = [];
    const batch = q.enqueue({
      engine: "e",
      priority: "background",
      run: async (_s, c) => {
        await unit.p;
        now += 1000; // ran long: enqueued 10 ageing periods ago
        await c.yield();
        order.push("batch resumed");
      },
    });
    await tick();
    const inter = q.enqueue({
      engine: "e",
      priority: "interactive",
      run: async () => {
        order.push("interactive");
        await g.p;
      },
    });
    const inter2 = q.enqueue({ engine: "e", priority: "interactive", run: async () => void order.push("interactive 2") });
    await tick();
    unit.open();
    await tick();
    g.open();
    await Promise.all([batch.promise, inter.promise, inter2.promise]);
    // aged from its enqueue it would rank as immediate and overtake "interactive 2"
    expect(order).toEqual(["interactive", "interactive 2", "batch resumed"]);
  });
});
