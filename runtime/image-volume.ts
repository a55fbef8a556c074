// Image volumes (CRI Mount.image, KEP 4639): where a mount's image_sub_path
// points inside the mounted image, and the snapshot key of a container's volume.
import { lstat, readlink } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument, notFound } from "./errors.js";

const KEY_PREFIX = "image-volume/";

/** The view snapshot of CRI mount `index` of container `containerId`. */
export const imageVolumeKey = (containerId: string, index: number): string => `${KEY_PREFIX}${containerId}/${index}`;

/** The container an image volume snapshot key belongs to; undefined for any other key. */
export function imageVolumeOwner(key: string): string | undefined {
  if (!key.startsWith(KEY_PREFIX)) return undefined;
  const [id, index, ...rest] = key.slice(KEY_PREFIX.length).split("/");
  return id && index && rest.length === 0 ? id : undefined;
}

/** The components of an image_sub_path: relative, and no ".." that could leave the image. */
export function subPathParts(subPath: string, field: string): string[] {
  if (subPath.startsWith("/")) throw invalidArgument(`${field} "${subPath}" must be a relative path`);
  const parts = subPath.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw invalidArgument(`${field} "${subPath}" must not contain ".."`);
  return parts;
}

const MAX_LINKS = 40;

/**
 * `subPath` inside the image mounted at `root`, symlinks followed as if `root`
 * were "/" (an absolute target, or ".." at the top, stays in the image), so the
 * result never leaves it. The path must exist.
 */
export async function resolveSubPath(root: string, subPath: string, field: string): Promise<string> {
  const pending = subPathParts(subPath, field);
  const resolved: string[] = [];
  let links = 0;
  for (let part = pending.shift(); part !== undefined; part = pending.shift()) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const path = join(root, ...resolved, part);
    const st = await lstat(path).catch(() => undefined);
    if (!st) throw notFound(`${field} "${subPath}" does not exist in the image`);
    if (!st.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw invalidArgument(`${field} "${subPath}": too many levels of symbolic links`);
    const target = await readlink(path);
    if (target.startsWith("/")) resolved.length = 0;
    pending.unshift(...target.split("/"));
  }
  return join(root, ...resolved);
}
