// ImageStatus: an image present in containerd as the CRI describes it; an
// absent one is an empty answer, not an error.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";
import type { StoredImage } from "../runtime/image/store.js";

/** The image config's User as the CRI wants it: a numeric uid, or else a name (the group dropped). */
export function imageUser(user: string | undefined): { uid?: number; username: string } {
  const name = (user ?? "").split(":")[0] ?? "";
  if (name === "") return { username: "" };
  return /^\d+$/.test(name) ? { uid: Number(name), username: "" } : { username: name };
}

export function toCriImage(image: StoredImage): cri.Image__Input {
  const { uid, username } = imageUser(image.config.config?.User);
  return {
    id: image.id,
    repo_tags: image.repoTags,
    repo_digests: image.repoDigests,
    size: image.size,
    uid: uid === undefined ? null : { value: uid },
    username,
    spec: { image: image.id, annotations: {} },
    pinned: image.pinned,
  };
}

export async function imageStatus(deps: Deps, req: cri.ImageStatusRequest, ctx: CallContext): Promise<cri.ImageStatusResponse__Input> {
  const spec = required(req.image?.image, "image.image");
  const image = await deps.imageStore.find(spec, ctx.signal);
  if (!image) return { image: null, info: {} };
  const res: cri.ImageStatusResponse__Input = { image: toCriImage(image), info: {} };
  if (req.verbose) {
    res.info = { info: JSON.stringify({ chainID: image.chainId, manifestDigest: image.manifestDigest, names: image.names, imageSpec: image.config }) };
  }
  return res;
}
