// In-memory cache of the images in crib's containerd namespace, for
// ListImages, ImageStatus and the lookups of CreateContainer and
// RunPodSandbox. containerd holds the records; this keeps their last listing
// and lists again only after something changed: an image event from
// containerd (crib's writes and anyone else's, `ctr` included), or a write
// crib made itself (`changed()`, so that a PullImage is seen by the very next
// call, before its event arrives). While the event stream is down, or after
// it reconnected (events may have been missed), every read lists again.
import type { Containerd } from "../../runtime/containerd/client.js";
import { findAmong, listImages, type StoredImage } from "../../runtime/image/store.js";

export interface ImageEventSource {
  /** which connection of the event stream is up, undefined while it is down */
  readonly connection: number | undefined;
}

interface Snapshot {
  generation: number;
  connection: number;
  images: StoredImage[];
}

export class ImageStore {
  readonly #containerd: Containerd;
  readonly #events: () => ImageEventSource | undefined;
  #generation = 0;
  #snapshot: Snapshot | undefined;
  #refresh: { generation: number; connection: number; done: Promise<Snapshot> } | undefined;

  constructor(containerd: Containerd, events: () => ImageEventSource | undefined) {
    this.#containerd = containerd;
    this.#events = events;
  }

  /** Something changed the image records: the next read lists them again. */
  changed(): void {
    this.#generation++;
  }

  /** Runs a write to image records; whatever its outcome, the next read lists again. */
  async writing<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } finally {
      this.changed();
    }
  }

  async list(signal?: AbortSignal): Promise<StoredImage[]> {
    const generation = this.#generation;
    const connection = this.#events()?.connection;
    if (connection === undefined) return listImages(this.#containerd, signal);
    const s = this.#snapshot;
    if (s && s.generation === generation && s.connection === connection) return s.images;
    // a listing begun at or after this call's start is fresh enough for it; concurrent readers share it
    if (!this.#refresh || this.#refresh.generation < generation || this.#refresh.connection !== connection) {
      const done = listImages(this.#containerd).then((images) => {
        const snapshot = { generation, connection, images };
        if (!this.#snapshot || this.#snapshot.generation <= generation) this.#snapshot = snapshot;
        return snapshot;
      });
      const refresh = { generation, connection, done };
      this.#refresh = refresh;
      const forget = (): void => {
        if (this.#refresh === refresh) this.#refresh = undefined;
      };
      done.then(forget, forget);
    }
    return (await abortable(this.#refresh.done, signal)).images;
  }

  /** By reference, image ID, digest reference or unique ID prefix (runtime/image/store.ts findImage). */
  async find(ref: string, signal?: AbortSignal): Promise<StoredImage | undefined> {
    return findAmong(await this.list(signal), ref);
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const abort = (): void => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
