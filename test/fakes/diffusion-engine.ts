// A test double of the DiffusionEngine interface (lib/diffusion/engine.ts):
// the image-job layer and the server's image API run against it; the real
// engine's tests are diffusion-engine.test.ts.
import type { DiffusionEngine, EngineEvent, EngineGenerateParams, EngineModel, RawImage } from "../../lib/diffusion/index";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake engine: `stepMs` per sampling step, images filled with (seed % 251). */
export class FakeModel implements EngineModel {
  readonly samplers = ["euler_a", "euler", "dpm++2m"];
  readonly schedulers = ["discrete", "karras"];
  readonly memoryBytes = { CPU: 1000 };
  calls: EngineGenerateParams[] = [];
  active = 0;
  maxActive = 0;
  stepsRun = 0;
  disposed = false;
  /** Generations running in any FakeModel at once (the process-wide rule). */
  static active = 0;
  static maxActive = 0;
  constructor(readonly stepMs = 2) {}
  async generate(p: EngineGenerateParams, onEvent: (e: EngineEvent) => void, cancel: { mode: "all" | "newLatents" | undefined }): Promise<RawImage[]> {
    this.calls.push(p);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    FakeModel.active++;
    FakeModel.maxActive = Math.max(FakeModel.maxActive, FakeModel.active);
    try {
      onEvent({ type: "stage", stage: "encoding", imageIndex: 0 });
      await sleep(this.stepMs);
      let sampled = 0;
      outer: for (let i = 0; i < p.count; i++) {
        for (let s = 1; s <= p.steps; s++) {
          if (cancel.mode === "all") break outer;
          await sleep(this.stepMs);
          this.stepsRun++;
          onEvent({ type: "step", imageIndex: i, step: s, steps: p.steps });
          if (p.preview && s % p.preview.intervalSteps === 0) onEvent({ type: "preview", imageIndex: i, step: s, image: this.#image(p, i, 3) });
        }
        sampled++;
        if (cancel.mode === "newLatents") break;
      }
      if (cancel.mode === "all") return [];
      const out: RawImage[] = [];
      for (let i = 0; i < sampled; i++) {
        onEvent({ type: "stage", stage: "decoding", imageIndex: i });
        await sleep(this.stepMs);
        out.push(this.#image(p, i, 3));
        onEvent({ type: "image", imageIndex: i });
      }
      return out;
    } finally {
      this.active--;
      FakeModel.active--;
    }
  }
  #image(p: EngineGenerateParams, i: number, channels: 3): RawImage {
    return { data: new Uint8Array(p.width * p.height * channels).fill((p.seed + i) % 251), width: p.width, height: p.height, channels };
  }
  dispose(): void {
    this.disposed = true;
  }
}

export function fakeEngine(model = new FakeModel()): DiffusionEngine & { model: FakeModel } {
  return { available: true, model, load: async () => model };
}
