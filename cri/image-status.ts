// ImageStatus: an image present in containerd as the CRI describes it; an
// absent one is an empty answer, not an error.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";
import type { StoredImage } from "../runtime/image/store.js";
import { criMessage } from "../proto/load.js";
import { EncodedItems, lengthDelimited, type Encoded } from "../proto/encoded.js";

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

// a StoredImage is made anew by every listing of containerd's records: nothing of it changes in place
const images = new EncodedItems(criMessage<cri.Image__Input>("runtime.v1.Image"), toCriImage, () => []);
export const encodedImage = (image: StoredImage): Buffer => images.bytes(image);
const IMAGE_FIELD = criMessage("runtime.v1.ImageStatusResponse").field("image");

export async function imageStatus(deps: Deps, req: cri.ImageStatusRequest, ctx: CallContext): Promise<cri.ImageStatusResponse__Input | Encoded<cri.ImageStatusResponse__Input>> {
  const spec = required(req.image?.image, "image.image");
  const image = await deps.imageStore.find(spec, ctx.signal);
  if (!image) return { image: null, info: {} };
  if (!req.verbose) return lengthDelimited([[IMAGE_FIELD, encodedImage(image)]]);
  const res: cri.ImageStatusResponse__Input = { image: toCriImage(image), info: {} };
  if (req.verbose) {
    res.info = { info: JSON.stringify({ chainID: image.chainId, manifestDigest: image.manifestDigest, names: image.names, imageSpec: image.config }) };
  }
  return res;
}
