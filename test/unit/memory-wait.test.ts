// The orchestrator's "waiting for memory": a job that would fit once running
// jobs stop using resources it may free waits for them instead of failing
// OUT_OF_MEMORY; what would not fit even then still fails at once.
import { describe, expect, it } from "vitest";
import { type Holding, type ManagedResource, Orchestrator, type Residency, type WaitEvent } from "../../lib/orchestrator/index";

class Res implements ManagedResource {
  residency: Residency = "unloaded";
  inUse = false;
  lastUsedAt = 0;
  constructor(
    readonly id: string,
    readonly engine: string,
    readonly bytes: number,
  ) {}
  holdings(): Holding[] {
    return this.residency === "unloaded" ? [] : this.residentHoldings();
  }
  residentHoldings(): Holding[] {
    return [{ device: "CPU", kind: "weights", bytes: this.bytes }];
  }
  async free(level: Exclude<Residency, "resident">): Promise<void> {
    this.residency = level;
  }
  async restore(): Promise<void> {
    this.residency = "resident";
  }
  setInUse(v: boolean): void {
    this.inUse = v;
  }
}

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe("Orchestrator: waiting for memory held by running jobs", () => {
  it("waits for the job using it, then frees it; fails at once when even that would not do; cancel while waiting is ABORTED", async () => {
    const a = new Res("a", "x", 1000);
    const b = new Res("b", "y", 800);
    const huge = new Res("huge", "z", 2000);
    const orch = new Orchestrator({ budgets: { CPU: 1500 }, restoreAfterJob: false });
    for (const r of [a, b, huge]) orch.add(r);
    const order: string[] = [];
    const waits: WaitEvent[] = [];
    orch.on("wait", (e: WaitEvent) => waits.push(e));
    try {
      const g = gate();
      const jobA = orch.submit({
        kind: "t",
        resource: a,
        run: async () => {
          order.push("a runs");
          await g.p;
          order.push("a ends");
        },
      });
      await new Promise((r) => setTimeout(r, 5));
      const jobB = orch.submit({ kind: "t", resource: b, run: async () => void order.push(`b runs, a ${a.residency}`) });
      // 2000 B never fit a 1500 B budget: no waiting
      await expect(orch.submit({ kind: "t", resource: huge, run: async () => undefined }).promise).rejects.toMatchObject({ code: "OUT_OF_MEMORY" });
      const cancelled = orch.submit({ kind: "t", resource: new Res("c", "w", 900), run: async () => void order.push("c runs") });
      await new Promise((r) => setTimeout(r, 5));
      expect(jobB.status).toBe("running"); // started, waiting for memory
      expect(waits.map((w) => [w.job, w.resources])).toEqual([
        [jobB.id, ["a"]],
        [cancelled.id, ["a"]],
      ]);
      cancelled.cancel();
      await expect(cancelled.promise).rejects.toMatchObject({ code: "ABORTED" });
      expect(order).toEqual(["a runs"]);
      g.open();
      await Promise.all([jobA.promise, jobB.promise]);
      expect(order).toEqual(["a runs", "a ends", "b runs, a unloaded"]);
    } finally {
      orch.dispose();
    }
  });
});
