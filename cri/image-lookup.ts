// The runtime side's view of images: find one present in containerd, or make
// sure the sandbox image is there (pulling it when missing).
import type { StoredImage } from "../runtime/image/store.js";
import type { ImageStore } from "./store/images.js";
import { notFound } from "../runtime/errors.js";
import type { ImageLookup, LocalImage } from "./deps.js";

export type Puller = (ref: string, signal?: AbortSignal) => Promise<void>;

const toLocal = (i: StoredImage): LocalImage => ({
  id: i.id, name: i.names[0]!, repoTags: i.repoTags, repoDigests: i.repoDigests, chainId: i.chainId, config: i.config,
});

export function imageLookup(store: ImageStore, pull: Puller | undefined): ImageLookup {
  return {
    async find(ref, signal) {
      const image = await store.find(ref, signal);
      return image ? toLocal(image) : undefined;
    },
    async ensure(ref, signal) {
      const present = await store.find(ref, signal);
      if (present) return toLocal(present);
      if (!pull) throw notFound(`image "${ref}" is not present`);
      await store.writing(() => pull(ref, signal));
      const pulled = await store.find(ref, signal);
      if (!pulled) throw notFound(`image "${ref}" is not present after pulling it`);
      return toLocal(pulled);
    },
  };
}
