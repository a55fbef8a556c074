// RemoveImage: by tag, that tag's record (and its repository's digest records
// once no tag of that repository is left); by ID or digest, every record of
// the image. Absent is success. The last delete is synchronous, so
// containerd's garbage collection frees the content and snapshots at once.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import { allSettled } from "./rollback.js";
import type { Deps } from "./deps.js";
import { failedPrecondition, required } from "../runtime/errors.js";
import { isNotFound } from "../runtime/containerd/errors.js";
import { normalizeReference, type StoredImage } from "../runtime/image/store.js";
import { parseReference, referenceString, repositoryName } from "../runtime/image/reference.js";

const repositoryOf = (name: string): string => {
  try {
    return repositoryName(parseReference(name));
  } catch {
    return "";
  }
};

/** The image records a RemoveImage of `spec` deletes. */
export function recordsToRemove(image: StoredImage, spec: string): string[] {
  let tag: string | undefined;
  try {
    const ref = normalizeReference(spec);
    if (ref.digest === undefined) tag = referenceString(ref);
  } catch {
    // an image ID
  }
  if (tag === undefined || !image.repoTags.includes(tag)) return image.names;
  const otherTags = image.repoTags.filter((t) => t !== tag);
  if (otherTags.length === 0) return image.names;
  const repository = repositoryOf(tag);
  if (otherTags.some((t) => repositoryOf(t) === repository)) return [tag];
  return [tag, ...image.repoDigests.filter((d) => repositoryOf(d) === repository)];
}

export async function removeImage(deps: Deps, req: cri.RemoveImageRequest, ctx: CallContext): Promise<cri.RemoveImageResponse__Input> {
  const spec = required(req.image?.image, "image.image");
  const image = await deps.imageStore.find(spec, ctx.signal);
  if (!image) return {};
  const names = recordsToRemove(image, spec);
  if (image.pinned) {
    const user = deps.sandboxes.list().find((s) => names.includes(s.image));
    if (user) {
      const pod = user.config.metadata ? ` (pod ${user.config.metadata.namespace}/${user.config.metadata.name})` : "";
      throw failedPrecondition(`image "${spec}" (${image.id}) is the pinned sandbox image of pod sandbox ${user.id}${pod}; remove the sandbox first`);
    }
  }
  // side by side, each with a synchronous GC: containerd's scheduler runs one collection for
  // waiters that overlap, and the last to answer has waited for one after every delete
  await deps.imageStore.writing(() => allSettled(names.map(async (name) => {
    try {
      await deps.containerd.images.Delete({ name, sync: true }, ctx.signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  })));
  ctx.log.info({ image: spec, id: image.id, removed: names }, "image removed");
  return {};
}
