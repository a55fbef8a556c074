// One lifecycle lock per sandbox, reader/writer: CreateContainer and StartContainer
// share it (a pod's containers start side by side), StopPodSandbox and
// RemovePodSandbox hold it alone, so no container is made or started in a pod
// while it is torn down. Fair: a waiting stop or remove lets no new creates in
// ahead of it. Pods never wait on each other.

interface Waiter {
  exclusive: boolean;
  wake: () => void;
}

class RwLock {
  readers = 0;
  writer = false;
  readonly queue: Waiter[] = [];

  get idle(): boolean {
    return this.readers === 0 && !this.writer && this.queue.length === 0;
  }

  acquire(exclusive: boolean): Promise<void> {
    if (this.queue.length === 0 && !this.writer && (!exclusive || this.readers === 0)) {
      this.#grant(exclusive);
      return Promise.resolve();
    }
    return new Promise((wake) => this.queue.push({ exclusive, wake }));
  }

  release(exclusive: boolean): void {
    if (exclusive) this.writer = false;
    else this.readers--;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (this.writer || (next.exclusive && this.readers > 0)) break;
      this.queue.shift();
      this.#grant(next.exclusive);
      next.wake();
      if (next.exclusive) break;
    }
  }

  #grant(exclusive: boolean): void {
    if (exclusive) this.writer = true;
    else this.readers++;
  }
}

export class SandboxLocks {
  readonly #locks = new Map<string, RwLock>();

  /** Runs `work` while holding the sandbox's lock shared with other creates and starts. */
  shared<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    return this.#with(sandboxId, false, work);
  }

  /** Runs `work` while holding the sandbox's lock alone (stop, remove). */
  exclusive<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    return this.#with(sandboxId, true, work);
  }

  /** How many sandboxes have a lock held or waited for (for tests). */
  get size(): number {
    return this.#locks.size;
  }

  async #with<T>(id: string, exclusive: boolean, work: () => Promise<T>): Promise<T> {
    let lock = this.#locks.get(id);
    if (!lock) {
      lock = new RwLock();
      this.#locks.set(id, lock);
    }
    await lock.acquire(exclusive);
    try {
      return await work();
    } finally {
      lock.release(exclusive);
      if (lock.idle && this.#locks.get(id) === lock) this.#locks.delete(id);
    }
  }
}
