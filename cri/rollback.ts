// Undo steps for a handler's side effects. Unless disarmed, they run in reverse
// order when the scope ends, under a fresh timeout: the request's own signal
// may be why we are unwinding.
import type { Logger } from "pino";

export type Undo = (signal: AbortSignal) => Promise<unknown> | unknown;

export class Rollback implements AsyncDisposable {
  readonly #steps: { what: string; undo: Undo }[] = [];
  #armed = true;

  constructor(readonly log: Logger, readonly timeoutMs = 60_000) {}

  defer(what: string, undo: Undo): void {
    this.#steps.push({ what, undo });
  }

  disarm(): void {
    this.#armed = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#armed) return;
    const signal = AbortSignal.timeout(this.timeoutMs);
    for (const { what, undo } of this.#steps.reverse()) {
      try {
        await undo(signal);
      } catch (err) {
        this.log.error({ err: err instanceof Error ? err.message : String(err), step: what }, "rollback step failed");
      }
    }
  }
}
