// Fan-out of container events to GetContainerEvents clients. Publishing never
// waits: each client has a bounded queue, and a client that falls that far
// behind (it stopped reading, or reads too slowly) is dropped; kubelet then
// relists and subscribes again.
export class EventSubscription<T> {
  readonly #queue: T[] = [];
  readonly #limit: number;
  #wake: (() => void) | undefined;
  #ended: "open" | "closed" | "overflowed" = "open";
  #resolveEnded!: () => void;
  /** Settles when the subscription is closed or dropped. */
  readonly ended = new Promise<void>((resolve) => (this.#resolveEnded = resolve));

  constructor(limit: number, readonly onEnd: (s: EventSubscription<T>) => void) {
    this.#limit = limit;
  }

  /** false when the client is already `limit` events behind: it is dropped. */
  push(event: T): boolean {
    if (this.#ended !== "open") return false;
    if (this.#queue.length >= this.#limit) {
      this.#end("overflowed");
      return false;
    }
    this.#queue.push(event);
    this.#wake?.();
    return true;
  }

  get overflowed(): boolean {
    return this.#ended === "overflowed";
  }

  get pending(): number {
    return this.#queue.length;
  }

  /** The next event; undefined once the subscription ended (closed or dropped) or `signal` fired. */
  async next(signal: AbortSignal): Promise<T | undefined> {
    for (;;) {
      if (this.#ended !== "open" || signal.aborted) return undefined;
      const event = this.#queue.shift();
      if (event !== undefined) return event;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.#wake = undefined;
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.#wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  close(): void {
    this.#end("closed");
  }

  #end(how: "closed" | "overflowed"): void {
    if (this.#ended !== "open") return;
    this.#ended = how;
    this.#queue.length = 0;
    this.#wake?.();
    this.#resolveEnded();
    this.onEnd(this);
  }
}

export class EventBus<T> {
  readonly #subscriptions = new Set<EventSubscription<T>>();
  readonly #limit: number;

  /** `limit`: how many events a client may be behind before it is dropped. */
  constructor(limit = 1024) {
    this.#limit = limit;
  }

  subscribe(): EventSubscription<T> {
    const s = new EventSubscription<T>(this.#limit, (ended) => this.#subscriptions.delete(ended));
    this.#subscriptions.add(s);
    return s;
  }

  publish(event: T): void {
    for (const s of [...this.#subscriptions]) s.push(event);
  }

  /** Subscribed clients now. */
  get clients(): number {
    return this.#subscriptions.size;
  }

  close(): void {
    for (const s of [...this.#subscriptions]) s.close();
  }
}
