// Who the container's first process runs as: the CRI security context's user
// and group, else the image's User, looked up in the image's own /etc/passwd
// and /etc/group. Supplementary groups are the primary group, the user's
// memberships in /etc/group (unless the policy is Strict) and supplemental_groups.
import { lstat, readFile, readlink } from "node:fs/promises";
import type { LinuxContainerSecurityContext } from "../../proto/gen/cri/runtime/v1/LinuxContainerSecurityContext.js";
import { invalidArgument } from "../errors.js";

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Always starts with gid, as containerd sets them. */
  additionalGids: number[];
  /** The user's name in the image's /etc/passwd, when it has one. */
  username?: string;
}

export interface UserRequest {
  /** The container's security context; null when the CRI sent none. */
  securityContext: LinuxContainerSecurityContext | null;
  /** The image config's User ("", "name", "uid", "name:group", "uid:gid"). */
  imageUser: string;
}

/** The image's account files; undefined when the image lacks one. */
export interface AccountFiles {
  passwd: string | undefined;
  group: string | undefined;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const maxId = 0xffffffff;

const numericId = (text: string): number | undefined => {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n <= maxId ? n : undefined;
};

function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const [name, , uid, gid] = line.split(":");
    const u = numericId(uid ?? "");
    const g = numericId(gid ?? "");
    if (name === undefined || name === "" || u === undefined || g === undefined) continue;
    entries.push({ name, uid: u, gid: g });
  }
  return entries;
}

function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const [name, , gid, members] = line.split(":");
    const g = numericId(gid ?? "");
    if (name === undefined || name === "" || g === undefined) continue;
    entries.push({ name, gid: g, members: (members ?? "").split(",").map((m) => m.trim()).filter((m) => m !== "") });
  }
  return entries;
}

function parseIdField(text: string, field: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > maxId) throw invalidArgument(`${field}: ${text} is not a valid id`);
  return n;
}

/** The user string the CRI asks for ("" when it leaves the choice to the image). */
function requestedUser(sc: LinuxContainerSecurityContext | null): string {
  if (sc === null) return "";
  const uid = sc.run_as_user;
  const username = sc.run_as_username;
  const gid = sc.run_as_group;
  if (uid !== null && username !== "") {
    throw invalidArgument(`security_context: run_as_user (${uid.value}) and run_as_username ("${username}") are both set; only one may be`);
  }
  if (uid !== null) parseIdField(String(uid.value), "security_context.run_as_user");
  if (gid !== null) parseIdField(String(gid.value), "security_context.run_as_group");
  const user = username !== "" ? username : uid !== null ? String(uid.value) : "";
  if (gid !== null) {
    if (user === "") throw invalidArgument(`security_context.run_as_group (${gid.value}) is set without run_as_user or run_as_username`);
    return `${user}:${gid.value}`;
  }
  return user;
}

/** Resolves the user against the image's account files (pure; resolveUser reads the files). */
export function resolveUserFrom(files: AccountFiles, request: UserRequest): ResolvedUser {
  const sc = request.securityContext;
  const fromCri = requestedUser(sc);
  const spec = fromCri !== "" ? fromCri : request.imageUser.trim();
  const source = fromCri !== "" ? "security_context" : `image user "${request.imageUser}"`;
  const passwd = files.passwd === undefined ? undefined : parsePasswd(files.passwd);
  const groups = files.group === undefined ? undefined : parseGroup(files.group);

  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? "" : spec.slice(colon + 1);

  let uid = 0;
  let gid = 0;
  let username: string | undefined;
  if (userPart === "") {
    username = passwd?.find((e) => e.uid === 0)?.name;
  } else {
    const asId = numericId(userPart);
    if (asId !== undefined) {
      uid = asId;
      const entry = passwd?.find((e) => e.uid === asId);
      if (entry !== undefined) {
        gid = entry.gid;
        username = entry.name;
      }
    } else {
      if (passwd === undefined) throw invalidArgument(`${source}: user "${userPart}" cannot be found: the image has no /etc/passwd`);
      const entry = passwd.find((e) => e.name === userPart);
      if (entry === undefined) throw invalidArgument(`${source}: user "${userPart}" not found in the image's /etc/passwd`);
      uid = entry.uid;
      gid = entry.gid;
      username = entry.name;
    }
  }
  if (groupPart !== "") {
    const asId = numericId(groupPart);
    if (asId !== undefined) {
      gid = asId;
    } else {
      if (groups === undefined) throw invalidArgument(`${source}: group "${groupPart}" cannot be found: the image has no /etc/group`);
      const entry = groups.find((g) => g.name === groupPart);
      if (entry === undefined) throw invalidArgument(`${source}: group "${groupPart}" not found in the image's /etc/group`);
      gid = entry.gid;
    }
  }

  const strict = sc?.supplemental_groups_policy === "Strict";
  const memberships =
    strict || username === undefined || groups === undefined
      ? []
      : groups.filter((g) => g.members.includes(username)).map((g) => g.gid);
  const configured = (sc?.supplemental_groups ?? []).map((g, i) =>
    parseIdField(String(g), `security_context.supplemental_groups[${i}]`),
  );
  const additionalGids = [...new Set([gid, ...memberships, ...configured])];
  return username === undefined ? { uid, gid, additionalGids } : { uid, gid, additionalGids, username };
}

/** Resolves the user against `<rootfs>/etc/passwd` and `<rootfs>/etc/group`; without a rootfs only numeric ids resolve. */
export async function resolveUser(rootfs: string | undefined, request: UserRequest): Promise<ResolvedUser> {
  const files: AccountFiles =
    rootfs === undefined || rootfs === ""
      ? { passwd: undefined, group: undefined }
      : { passwd: await readInRoot(rootfs, "/etc/passwd"), group: await readInRoot(rootfs, "/etc/group") };
  return resolveUserFrom(files, request);
}

const maxSymlinks = 40;

/**
 * Reads `path` as the container would see it: symlinks, absolute ones
 * included, resolve inside `root` so an image cannot point crib at a host file.
 * Undefined when the file does not exist.
 */
export async function readInRoot(root: string, path: string): Promise<string | undefined> {
  const resolved: string[] = [];
  const pending = path.split("/").filter((p) => p !== "" && p !== ".");
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const candidate = `${root}/${[...resolved, part].join("/")}`;
    let stats;
    try {
      stats = await lstat(candidate);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
      throw err;
    }
    if (stats.isSymbolicLink()) {
      if (++links > maxSymlinks) throw invalidArgument(`${path} in the image: too many levels of symbolic links`);
      const target = await readlink(candidate);
      if (target.startsWith("/")) resolved.length = 0;
      pending.unshift(...target.split("/").filter((p) => p !== "" && p !== "."));
      continue;
    }
    resolved.push(part);
  }
  try {
    return await readFile(`${root}/${resolved.join("/")}`, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "EISDIR") return undefined;
    throw err;
  }
}
