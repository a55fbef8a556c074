// ImageFsInfo: the snapshotter's directory and what crib's snapshots use of it;
// images and containers' writable layers share that filesystem.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";

export async function imageFsInfo(deps: Deps, _req: cri.ImageFsInfoRequest, ctx: CallContext): Promise<cri.ImageFsInfoResponse__Input> {
  const u = await deps.imageFs.get(ctx.signal);
  const fs: cri.FilesystemUsage__Input = {
    timestamp: u.timestamp,
    fs_id: { mountpoint: u.mountpoint },
    used_bytes: { value: u.usedBytes },
    inodes_used: { value: u.inodesUsed },
  };
  return { image_filesystems: [fs], container_filesystems: [fs] };
}
