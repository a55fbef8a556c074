// ListImages: every image crib has, or the one the filter's image spec names.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { StoredImage } from "../runtime/image/store.js";
import { criMessage } from "../proto/load.js";
import { repeated, type Encoded } from "../proto/encoded.js";
import { encodedImage, toCriImage } from "./image-status.js";

async function selectImages(deps: Deps, req: cri.ListImagesRequest, signal: AbortSignal): Promise<readonly StoredImage[]> {
  const wanted = req.filter?.image?.image;
  if (!wanted) return deps.imageStore.list(signal);
  const image = await deps.imageStore.find(wanted, signal);
  return image ? [image] : [];
}

/** ListImages as StreamImages sends it, in parts. */
export async function listImages(deps: Deps, req: cri.ListImagesRequest, ctx: CallContext): Promise<cri.ListImagesResponse__Input> {
  return { images: (await selectImages(deps, req, ctx.signal)).map(toCriImage) };
}

const LIST_FIELD = criMessage("runtime.v1.ListImagesResponse").field("images");
// the image store's listing is the same array until the records change: its reply is kept with it
const replies = new WeakMap<readonly StoredImage[], Encoded<cri.ListImagesResponse__Input>>();

export async function listImagesRpc(deps: Deps, req: cri.ListImagesRequest, ctx: CallContext): Promise<Encoded<cri.ListImagesResponse__Input>> {
  const images = await selectImages(deps, req, ctx.signal);
  let reply = replies.get(images);
  if (!reply) {
    reply = repeated(LIST_FIELD, images.map(encodedImage));
    replies.set(images, reply);
  }
  return reply;
}
