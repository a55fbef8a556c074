// ListImages: every image crib has, or the one the filter's image spec names.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { toCriImage } from "./image-status.js";

export async function listImagesRpc(deps: Deps, req: cri.ListImagesRequest, ctx: CallContext): Promise<cri.ListImagesResponse__Input> {
  const wanted = req.filter?.image?.image;
  if (wanted) {
    const image = await deps.imageStore.find(wanted, ctx.signal);
    return { images: image ? [toCriImage(image)] : [] };
  }
  const images = await deps.imageStore.list(ctx.signal);
  return { images: images.map(toCriImage) };
}
