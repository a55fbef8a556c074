// Undo steps for a handler's side effects. Unless disarmed, they run in reverse
// order when the scope ends, under a fresh timeout: the request's own signal
// may be why we are unwinding.
import type { Logger } from "pino";

export type Undo = (signal: AbortSignal) => Promise<unknown> | unknown;

export interface RollbackOptions {
  /** budget of the whole undo, apart from the request's */
  timeoutMs?: number;
  /**
   * Told, after every step ran, which failed: the caller keeps its intent
   * recorded for a retry when any did, and drops it when none did.
   */
  settled?: (failed: string[]) => Promise<void> | void;
}

export class Rollback implements AsyncDisposable {
  readonly #steps: { what: string; undo: Undo }[] = [];
  #armed = true;
  readonly timeoutMs: number;
  readonly #settled: RollbackOptions["settled"];

  constructor(readonly log: Logger, opts: RollbackOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.#settled = opts.settled;
  }

  defer(what: string, undo: Undo): void {
    this.#steps.push({ what, undo });
  }

  disarm(): void {
    this.#armed = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#armed) return;
    const signal = AbortSignal.timeout(this.timeoutMs);
    const failed: string[] = [];
    for (const { what, undo } of this.#steps.reverse()) {
      try {
        await undo(signal);
      } catch (err) {
        failed.push(what);
        this.log.error({ err: err instanceof Error ? err.message : String(err), step: what }, failed.length === 1 && this.#settled ? "rollback step failed; kept for a retry" : "rollback step failed");
      }
    }
    try {
      await this.#settled?.(failed);
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, "recording the rollback's outcome failed");
    }
  }
}

/**
 * Like Promise.all, but fails only once every branch has settled: a rollback
 * must not run while a sibling branch is still creating what it would undo.
 */
export async function allSettled<T extends readonly unknown[]>(branches: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(branches);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
