// Work that outlives its request. When kubelet's deadline expires while a
// RunPodSandbox or CreateContainer is still working, crib finishes the work; the
// retry with the same name gets the finished result instead of "name reserved".
// A result nobody picks up is handed to `abandon` after `ttlMs`.
interface Entry<T> {
  promise: Promise<T>;
  claimed: boolean;
  timer?: NodeJS.Timeout;
}

export class OutlivingWork<T> {
  readonly #entries = new Map<string, Entry<T>>();

  constructor(readonly abandon: (result: T) => Promise<void>, readonly ttlMs = 10 * 60_000) {}

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Starts `work` for `key`, or joins the one already under way or finished unclaimed. */
  async run(key: string, work: () => Promise<T>, signal: AbortSignal): Promise<T> {
    let entry = this.#entries.get(key);
    if (!entry) {
      const created: Entry<T> = { promise: work(), claimed: false };
      entry = created;
      this.#entries.set(key, created);
      created.promise.then(
        (result) => {
          if (created.claimed) return;
          created.timer = setTimeout(() => {
            if (this.#entries.get(key) === created) this.#entries.delete(key);
            void this.abandon(result).catch(() => undefined);
          }, this.ttlMs);
          created.timer.unref();
        },
        () => { if (this.#entries.get(key) === created) this.#entries.delete(key); },
      );
    }
    const result = await raceSignal(entry.promise, signal);
    entry.claimed = true;
    clearTimeout(entry.timer);
    if (this.#entries.get(key) === entry) this.#entries.delete(key);
    return result;
  }

  close(): void {
    for (const e of this.#entries.values()) clearTimeout(e.timer);
  }
}

export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => { signal.removeEventListener("abort", onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener("abort", onAbort); reject(e); },
    );
  });
}
