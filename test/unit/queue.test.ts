import { describe, expect, it, vi } from "vitest";
import { GenaiError } from "../../lib/errors";
import { JobQueue, PRIORITIES, type JobStatus, type Priority, type QueuedJob } from "../../lib/orchestrator/queue";

/** Lets queued microtasks and settled promises run. */
const tick = () => new Promise((r) => setTimeout(r, 0));

/** A promise the test opens when it likes. */
function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

/** Records every status a job goes through. */
function statuses<T>(job: QueuedJob<T>): JobStatus[] {
  const seen: JobStatus[] = [job.status];
  job.onStatus((j) => seen.push(j.status));
  return seen;
}

describe("JobQueue: order", () => {
  it("exports the priorities highest first", () => {
    expect(PRIORITIES).toEqual(["immediate", "interactive", "preload", "background"]);
  });

  it("runs by priority, highest first, and reports positions in that order", async () => {
    const q = new JobQueue();
    const order: string[] = [];
    const g = gate();
    const first = q.enqueue({
      engine: "e",
      run: async () => {
        order.push("first");
        await g.p;
      },
    });
    await tick();
    const specs: [string, Priority][] = [
      ["b1", "background"],
      ["i1", "interactive"],
      ["p1", "preload"],
      ["im1", "immediate"],
      ["i2", "interactive"],
      ["b2", "background"],
      ["im2", "immediate"],
    ];
    const jobs = specs.map(([name, priority]) =>
      q.enqueue({
        engine: "e",
        priority,
        run: async () => {
          order.push(name);
        },
      }),
    );
    expect(jobs.map((j) => j.position())).toEqual([5, 2, 4, 0, 3, 6, 1]);
    expect(first.position()).toBe(-1); // running
    expect(q.pending()).toBe(7);
    g.open();
    await Promise.all([first.promise, ...jobs.map((j) => j.promise)]);
    expect(order).toEqual(["first", "im1", "im2", "i1", "i2", "p1", "b1", "b2"]);
    expect(jobs.every((j) => j.position() === -1)).toBe(true);
  });

  it("is FIFO within a priority", async () => {
    const q = new JobQueue();
    const order: number[] = [];
    const jobs = Array.from({ length: 20 }, (_, i) =>
      q.enqueue({
        engine: "e",
        priority: "preload",
        run: async () => {
          order.push(i);
          await tick();
        },
      }),
    );
    expect(jobs.map((j) => j.position())).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await q.onIdle();
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it("never starts a job inside enqueue(); calls onStart just before run", async () => {
    const q = new JobQueue();
    const calls: string[] = [];
    const job: QueuedJob<number> = q.enqueue({
      engine: "e",
      onStart: () => {
        calls.push(`start:${job.status}`);
      },
      run: async () => {
        calls.push("run");
        return 7;
      },
    });
    expect(calls).toEqual([]);
    expect(job.status).toBe("pending");
    expect(q.pending()).toBe(1);
    expect(await job.promise).toBe(7);
    expect(calls).toEqual(["start:running", "run"]);
  });
});

describe("JobQueue: ageing", () => {
  /** A blocker, one background job, then a stream: each interactive run takes 400 ms (clock) and enqueues the next. */
  async function stream(ageingMs: number) {
    let now = 0;
    const q = new JobQueue({ ageingMs, now: () => now });
    const order: string[] = [];
    const blocker = gate();
    q.enqueue({ engine: "e", run: () => blocker.p });
    await tick();
    q.enqueue({
      engine: "e",
      priority: "background",
      run: async () => {
        order.push("bg");
      },
    });
    const next = (i: number) =>
      q.enqueue({
        engine: "e",
        priority: "interactive",
        run: async () => {
          now += 400;
          order.push(`i${i}`);
          if (i < 19) next(i + 1); // always one newer interactive job waiting
        },
      });
    next(0);
    blocker.open();
    await q.onIdle();
    return order;
  }

  it("a waiting background job runs before a stream of newer interactive jobs", async () => {
    const order = await stream(1000);
    // i0..i4 end at 400..2000 ms; at 2000 ms bg has waited 2 × ageingMs: level 0 + 2 = interactive, and it is older than i5
    expect(order.indexOf("bg")).toBe(5);
    expect(order.slice(6)).toEqual(Array.from({ length: 15 }, (_, i) => `i${i + 5}`)); // the stream went on after it
    // without ageing the stream starves it until the stream stops
    expect((await stream(Infinity)).indexOf("bg")).toBe(20);
  });

  it("gains exactly one level per ageingMs waited; ties go to the older job", async () => {
    let now = 0;
    const q = new JobQueue({ ageingMs: 1000, now: () => now });
    const blocker = gate();
    q.enqueue({ engine: "e", run: () => blocker.p });
    await tick();
    const bg = q.enqueue({ engine: "e", priority: "background", run: async () => undefined });
    now = 999;
    const pre = q.enqueue({ engine: "e", priority: "preload", run: async () => undefined });
    expect([pre.position(), bg.position()]).toEqual([0, 1]); // bg still level 0 < 1
    now = 1000;
    expect([bg.position(), pre.position()]).toEqual([0, 1]); // bg level 1 = preload, and older
    now = 1999;
    const inter = q.enqueue({ engine: "e", priority: "interactive", run: async () => undefined });
    // pre has waited 1000 ms (level 1 + 1 = 2, ties with inter and is older); bg still level 1
    expect([pre.position(), inter.position(), bg.position()]).toEqual([0, 1, 2]);
    now = 2000;
    expect([bg.position(), pre.position(), inter.position()]).toEqual([0, 1, 2]); // bg 2, pre 1 + 1 = 2, inter 2 + 0: by age
    blocker.open();
    await q.onIdle();
  });

  it("after 3 × ageingMs even newer immediate jobs do not overtake it; ties go by enqueue order", async () => {
    let now = 0;
    const q = new JobQueue({ ageingMs: 100, now: () => now });
    const blocker = gate();
    q.enqueue({ engine: "e", run: () => blocker.p });
    await tick();
    const bg = q.enqueue({ engine: "e", priority: "background", run: async () => "bg" });
    now += 299;
    const imm1 = q.enqueue({ engine: "e", priority: "immediate", run: async () => "imm1" });
    expect([imm1.position(), bg.position()]).toEqual([0, 1]); // bg at level 2 < 3
    now += 1;
    const imm2 = q.enqueue({ engine: "e", priority: "immediate", run: async () => "imm2" });
    // bg reached level 3 (capped): equal to both immediates and the oldest of the three
    expect([bg.position(), imm1.position(), imm2.position()]).toEqual([0, 1, 2]);
    now = 1299; // levels are capped at immediate: imm1 (waited 1000 ms, 3 + 10 uncapped) does not rise above bg (0 + 12)
    expect([bg.position(), imm1.position(), imm2.position()]).toEqual([0, 1, 2]);
    blocker.open();
    await q.onIdle();
    expect(bg.startedAt).toBeDefined();
  });
});

describe("JobQueue: per-engine limits", () => {
  it("a busy engine does not block another engine's jobs behind it", async () => {
    const q = new JobQueue({ limits: { llm: 1, diffusion: 1, embed: 2 } });
    const g = gate();
    const running: string[] = [];
    q.enqueue({
      engine: "llm",
      run: async () => {
        running.push("llm1");
        await g.p;
      },
    });
    await tick(); // llm1 holds the llm engine's one slot
    const llm2 = q.enqueue({
      engine: "llm",
      priority: "immediate",
      run: async () => {
        running.push("llm2");
      },
    });
    const sd = q.enqueue({
      engine: "diffusion",
      priority: "background",
      run: async () => {
        running.push("sd");
        await g.p;
      },
    });
    for (const n of ["e1", "e2", "e3"])
      q.enqueue({
        engine: "embed",
        run: async () => {
          running.push(n);
          await g.p;
        },
      });
    await tick();
    expect([...running].sort()).toEqual(["e1", "e2", "llm1", "sd"]);
    expect(llm2.status).toBe("pending");
    expect(llm2.position()).toBe(0); // first in line, waiting only for its engine
    expect(sd.status).toBe("running");
    expect(q.running()).toBe(4);
    expect(q.pending()).toBe(2);
    g.open();
    await q.onIdle();
    expect(running.slice(4).sort()).toEqual(["e3", "llm2"]);
  });

  it("never runs more of an engine's jobs at once than its limit; default 1, Infinity allowed", async () => {
    const q = new JobQueue({ limits: { two: 2, many: Infinity } });
    const live = new Map<string, number>();
    const peak = new Map<string, number>();
    const job = (engine: string) =>
      q.enqueue({
        engine,
        run: async () => {
          live.set(engine, (live.get(engine) ?? 0) + 1);
          peak.set(engine, Math.max(peak.get(engine) ?? 0, live.get(engine)!));
          await tick();
          await tick();
          live.set(engine, live.get(engine)! - 1);
        },
      });
    for (let i = 0; i < 6; i++) for (const e of ["two", "many", "unlisted"]) job(e);
    await q.onIdle();
    expect(Object.fromEntries(peak)).toEqual({ two: 2, many: 6, unlisted: 1 });
  });

  it("frees the slot before the job's promise settles", async () => {
    const q = new JobQueue();
    const a = q.enqueue({ engine: "e", run: async () => "a" });
    const b = q.enqueue({ engine: "e", run: async () => "b" });
    await a.promise;
    expect(a.status).toBe("done");
    expect(q.running()).toBe(0); // a's slot is free already; b starts in the next microtask
    expect(q.pending()).toBe(1);
    expect(await b.promise).toBe("b");
  });
});

describe("JobQueue: cancellation", () => {
  it("cancel while queued: removed, positions move up, promise rejects ABORTED, run never called", async () => {
    const q = new JobQueue();
    const g = gate();
    q.enqueue({ engine: "e", run: () => g.p });
    await tick();
    let ran = false;
    const a = q.enqueue({
      engine: "e",
      run: async () => {
        ran = true;
        return "a";
      },
    });
    const b = q.enqueue({ engine: "e", run: async () => "b" });
    const c = q.enqueue({ engine: "e", run: async () => "c" });
    expect([a.position(), b.position(), c.position()]).toEqual([0, 1, 2]);
    const seen = statuses(a);
    a.cancel("not needed");
    expect(a.status).toBe("cancelled");
    expect(seen).toEqual(["pending", "cancelled"]);
    expect(a.position()).toBe(-1);
    expect([b.position(), c.position()]).toEqual([0, 1]);
    expect(q.pending()).toBe(2);
    await expect(a.promise).rejects.toMatchObject({ name: "GenaiError", code: "ABORTED", message: "not needed" });
    expect(a.error?.code).toBe("ABORTED");
    g.open();
    expect(await b.promise).toBe("b");
    expect(await c.promise).toBe("c");
    expect(ran).toBe(false);
    a.cancel(); // no effect once ended
    expect(a.status).toBe("cancelled");
  });

  it("cancel while running aborts the run's signal with an ABORTED reason", async () => {
    const q = new JobQueue();
    let seen: AbortSignal | undefined;
    const job = q.enqueue({
      engine: "e",
      run: (signal) =>
        new Promise((_, reject) => {
          seen = signal;
          signal.addEventListener("abort", () => reject(signal.reason));
        }),
    });
    const trail = statuses(job);
    await tick();
    expect(job.status).toBe("running");
    expect(seen?.aborted).toBe(false);
    job.cancel("user pressed stop");
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBeInstanceOf(GenaiError);
    expect((seen?.reason as GenaiError | undefined)?.code).toBe("ABORTED");
    await expect(job.promise).rejects.toMatchObject({ code: "ABORTED", message: "user pressed stop" });
    expect(trail).toEqual(["pending", "running", "cancelled"]);
    expect(job.endedAt).toBeGreaterThanOrEqual(job.startedAt!);
  });

  it("a cancelled run that resolves anyway is done with its result; one that fails otherwise is cancelled with its error", async () => {
    const q = new JobQueue({ limits: { e: Infinity } });
    const resolves = q.enqueue({ engine: "e", run: (signal) => new Promise((res) => signal.addEventListener("abort", () => res("partial"))) });
    const throws = q.enqueue({
      engine: "e",
      run: (signal) =>
        new Promise((_, rej) => signal.addEventListener("abort", () => rej(Object.assign(new Error("decode interrupted"), { code: "BACKEND_ERROR" })))),
    });
    await tick();
    resolves.cancel();
    throws.cancel();
    expect(await resolves.promise).toBe("partial");
    expect(resolves.status).toBe("done");
    expect(resolves.result).toBe("partial");
    await expect(throws.promise).rejects.toMatchObject({ code: "BACKEND_ERROR", message: "decode interrupted" });
    expect(throws.status).toBe("cancelled");
  });

  it("an AbortSignal cancels a queued job and a running one", async () => {
    const q = new JobQueue();
    const ac = new AbortController();
    let aborted = false;
    const running = q.enqueue({
      engine: "e",
      signal: ac.signal,
      run: (s) =>
        new Promise((_, rej) =>
          s.addEventListener("abort", () => {
            aborted = true;
            rej(s.reason);
          }),
        ),
    });
    await tick();
    let ran = false;
    const queued = q.enqueue({
      engine: "e",
      signal: ac.signal,
      run: async () => {
        ran = true;
      },
    });
    expect(queued.position()).toBe(0);
    ac.abort(new Error("timeout"));
    expect(queued.status).toBe("cancelled");
    await expect(queued.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect((queued.error?.cause as Error | undefined)?.message).toBe("timeout");
    await expect(running.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect(running.status).toBe("cancelled");
    expect(aborted).toBe(true);
    expect(ran).toBe(false);
    await q.onIdle();
  });

  it("an already-aborted signal rejects at once and never runs", async () => {
    const q = new JobQueue();
    let ran = false;
    const job = q.enqueue({
      engine: "e",
      signal: AbortSignal.abort(),
      run: async () => {
        ran = true;
      },
    });
    expect(job.status).toBe("cancelled");
    expect(job.position()).toBe(-1);
    expect(q.pending()).toBe(0);
    await expect(job.promise).rejects.toMatchObject({ code: "ABORTED" });
    await tick();
    expect(ran).toBe(false);
  });

  it("removes its abort listener from the caller's signal once the job ends", async () => {
    const q = new JobQueue();
    const ac = new AbortController();
    const remove = vi.spyOn(ac.signal, "removeEventListener");
    const job = q.enqueue({ engine: "e", signal: ac.signal, run: async () => 1 });
    await job.promise;
    expect(remove).toHaveBeenCalledWith("abort", expect.any(Function));
    ac.abort(); // after the end: no effect
    expect(job.status).toBe("done");
  });

  it("a run that cancels a job due in the same pass keeps it from starting", async () => {
    const q = new JobQueue({ limits: { e: Infinity } });
    let bRan = false;
    let b!: QueuedJob<void>;
    const a = q.enqueue({ engine: "e", run: async () => b.cancel() });
    b = q.enqueue({
      engine: "e",
      run: async () => {
        bRan = true;
      },
    });
    await a.promise;
    await expect(b.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect(bRan).toBe(false);
    expect(b.status).toBe("cancelled");
  });

  it("cancelAll cancels queued jobs and signals running ones", async () => {
    const q = new JobQueue();
    let signal!: AbortSignal;
    const r = q.enqueue({
      engine: "e",
      run: (s) => {
        signal = s;
        return new Promise((_, rej) => s.addEventListener("abort", () => rej(s.reason)));
      },
    });
    await tick();
    const p1 = q.enqueue({ engine: "e", run: async () => 1 });
    const p2 = q.enqueue({ engine: "other", priority: "background", run: () => new Promise(() => undefined) });
    await tick(); // p2 runs (its engine is free) and never settles by itself
    expect(p2.status).toBe("running");
    q.cancelAll("shutting down");
    expect(p1.status).toBe("cancelled");
    expect(signal.aborted).toBe(true);
    await expect(r.promise).rejects.toMatchObject({ code: "ABORTED", message: "shutting down" });
    await expect(p1.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect(p2.status).toBe("running"); // its run ignores the signal: it decides how to stop
    expect(q.running()).toBe(1);
  });

  it("never leaks unhandled rejections for jobs nobody awaits", async () => {
    const seen: unknown[] = [];
    const onUnhandled = (e: unknown) => seen.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const q = new JobQueue();
      const g = gate();
      q.enqueue({ engine: "e", run: () => g.p });
      q.enqueue({ engine: "e", run: async () => 1 }).cancel();
      q.enqueue({ engine: "e", signal: AbortSignal.abort(), run: async () => 1 });
      q.enqueue({
        engine: "x",
        run: async () => {
          throw new Error("nobody listens");
        },
      });
      q.enqueue({
        engine: "y",
        run: () => {
          throw new Error("sync throw");
        },
      });
      g.open();
      await q.onIdle();
      for (let i = 0; i < 5; i++) await tick();
      expect(seen).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("JobQueue: status, errors, onIdle", () => {
  it("status transitions pending → running → done, with timestamps from the clock", async () => {
    let now = 1000;
    const q = new JobQueue({ now: () => now });
    const g = gate();
    const job = q.enqueue({
      engine: "e",
      run: async () => {
        await g.p;
        return { ok: true };
      },
    });
    const trail = statuses(job);
    expect(job.enqueuedAt).toBe(1000);
    now = 1500;
    await tick();
    expect(job.status).toBe("running");
    expect(job.startedAt).toBe(1500);
    expect(job.position()).toBe(-1);
    now = 2500;
    g.open();
    expect(await job.promise).toEqual({ ok: true });
    expect(trail).toEqual(["pending", "running", "done"]);
    expect(job.endedAt).toBe(2500);
    expect(job.result).toEqual({ ok: true });
  });

  it("a failing run gives status error with a typed error (sync throws too)", async () => {
    const q = new JobQueue({ limits: { e: 2 } });
    const async_ = q.enqueue({
      engine: "e",
      run: async () => {
        throw Object.assign(new Error("boom"), { code: "OUT_OF_MEMORY" });
      },
    });
    const sync = q.enqueue({
      engine: "e",
      run: () => {
        throw new Error("plain");
      },
    });
    const trail = statuses(async_);
    await expect(async_.promise).rejects.toMatchObject({ name: "GenaiError", code: "OUT_OF_MEMORY", message: "boom" });
    expect(async_.status).toBe("error");
    expect(trail).toEqual(["pending", "running", "error"]);
    await expect(sync.promise).rejects.toMatchObject({ code: "BACKEND_ERROR", message: "plain" });
    expect(sync.status).toBe("error");
    // a run that gives up with ABORTED on its own counts as cancelled
    const gaveUp = q.enqueue({
      engine: "e",
      run: async () => {
        throw new GenaiError("ABORTED", "timeout");
      },
    });
    await gaveUp.promise.catch(() => undefined);
    expect(gaveUp.status).toBe("cancelled");
  });

  it("onStart throwing fails the job without calling run", async () => {
    const q = new JobQueue();
    let ran = false;
    const job = q.enqueue({
      engine: "e",
      onStart: () => {
        throw new GenaiError("OUT_OF_MEMORY", "no room");
      },
      run: async () => {
        ran = true;
      },
    });
    await expect(job.promise).rejects.toMatchObject({ code: "OUT_OF_MEMORY" });
    expect(ran).toBe(false);
    expect(q.running()).toBe(0);
  });

  it("a throwing status listener does not break the queue", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    try {
      const q = new JobQueue();
      const job = q.enqueue({ engine: "e", run: async () => 3 });
      job.onStatus(() => {
        throw new Error("listener bug");
      });
      expect(await job.promise).toBe(3);
      expect(warn).toHaveBeenCalled();
      expect(q.running()).toBe(0);
      expect(await q.enqueue({ engine: "e", run: async () => 4 }).promise).toBe(4);
    } finally {
      warn.mockRestore();
    }
  });

  it("onIdle resolves at once when idle, else when the last job ends", async () => {
    const q = new JobQueue({ limits: { a: 1, b: 1 } });
    let resolved = false;
    await q.onIdle(); // idle now
    const ga = gate();
    const gb = gate();
    q.enqueue({ engine: "a", run: () => ga.p });
    q.enqueue({ engine: "b", run: () => gb.p });
    q.enqueue({ engine: "b", run: async () => undefined });
    const idle = q.onIdle().then(() => (resolved = true));
    await tick();
    expect(resolved).toBe(false);
    ga.open();
    await tick();
    expect(resolved).toBe(false);
    gb.open();
    await idle;
    expect(resolved).toBe(true);
    expect([q.pending(), q.running()]).toEqual([0, 0]);
    // cancelling the only pending job makes the queue idle too
    const blockedQ = new JobQueue();
    const only = blockedQ.enqueue({ engine: "e", run: async () => 1 });
    const idle2 = blockedQ.onIdle();
    only.cancel();
    await expect(idle2).resolves.toBeUndefined();
  });

  it("validates options and specs with INVALID_ARGUMENT", () => {
    const bad = (f: () => unknown) => expect(f).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    bad(() => new JobQueue({ ageingMs: 0 }));
    bad(() => new JobQueue({ ageingMs: Number.NaN }));
    bad(() => new JobQueue({ limits: { llm: 0 } }));
    bad(() => new JobQueue({ limits: { llm: 1.5 } }));
    const q = new JobQueue();
    bad(() => q.enqueue({ engine: "", run: async () => 1 }));
    bad(() => q.enqueue({ engine: "e", priority: "urgent" as Priority, run: async () => 1 }));
    bad(() => q.enqueue({ engine: "e", priority: "toString" as Priority, run: async () => 1 }));
    bad(() => q.enqueue({ engine: "e" } as never));
    bad(() => q.enqueue({ engine: "e", signal: {} as AbortSignal, run: async () => 1 }));
    expect(q.pending()).toBe(0);
  });

  it("job ids are unique", () => {
    const q = new JobQueue();
    const ids = new Set(Array.from({ length: 50 }, () => q.enqueue({ engine: "e", run: async () => 1 }).id));
    expect(ids.size).toBe(50);
    q.cancelAll();
  });
});

describe("JobQueue, JobRegistry and Orchestrator options", () => {
  it("unknown keys are INVALID_ARGUMENT naming them", async () => {
    const { JobRegistry } = await import("../../lib/orchestrator/registry");
    const { Orchestrator } = await import("../../lib/orchestrator/orchestrator");
    expect(() => new JobQueue({ ageing: 5 } as never)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/options\.ageing/) }),
    );
    const q = new JobQueue();
    expect(() => q.enqueue({ engine: "llm", run: async () => 1, prio: "immediate" } as never)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/spec\.prio/) }),
    );
    expect(() => new JobRegistry({ ttl: 5 } as never)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new Orchestrator({ budgets: {}, restore: false } as never)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    const o = new Orchestrator({ budgets: { CPU: 1e9 } });
    try {
      expect(() => o.submit({ kind: "x", run: async () => 1, priorty: "background" } as never)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    } finally {
      o.dispose();
    }
  });
});
