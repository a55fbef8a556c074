// The checks of `crib doctor` about the host and the stack below crib: kernel,
// cgroups, modules, sysctls, overlayfs, runc and the shim, containerd, CNI, the
// sandbox image, the socket, disk space and the OOM-score capability.
import { execFile } from "node:child_process";
import { access, constants, lstat, mkdir, mkdtemp, readFile, rm, stat, statfs, writeFile } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { promisify } from "node:util";
import { cgroupDriver, type Config } from "./config.js";
import type { Check, DoctorContext, Verdict } from "./doctor.js";
import { socketAnswers } from "./socket.js";
import { SYSTEM_CONTAINERD } from "./serve.js";
import { Containerd } from "../runtime/containerd/client.js";
import { daemonAddress } from "../runtime/containerd/daemon.js";
import { SNAPSHOTTER } from "../runtime/containerd/tasks.js";
import { findImage } from "../runtime/image/store.js";
import { archiveExists, archiveImageNames } from "../runtime/image/archive.js";
import { findPlugin, loadNetworkConfig } from "../cni/config.js";
import { DEFAULT_APPARMOR_PROFILE, appArmorEnabled, loadedProfiles } from "../runtime/spec/apparmor.js";

const run = promisify(execFile);
const GiB = 1024 ** 3;
const CAP_SYS_RESOURCE = 24n;

const readText = (path: string): Promise<string | undefined> => readFile(path, "utf8").catch(() => undefined);
const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

/** The executable `name` resolves to (a path, or a search of PATH). */
export async function which(name: string): Promise<string | undefined> {
  const candidates = name.includes("/") ? [name] : (process.env["PATH"] ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const path of candidates) {
    try {
      if ((await stat(path)).isFile()) {
        await access(path, constants.X_OK);
        return path;
      }
    } catch { /* next */ }
  }
  return undefined;
}

async function versionLine(binary: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(binary, args, { timeout: 5000 });
    const lines = (stdout.trim() || stderr.trim()).split("\n").map((l) => l.trim());
    // "runc version 1.1.5", or a heading ("containerd-shim-runc-v2:") then "Version: 1.6.20"
    return lines[0]?.endsWith(":") ? lines.find((l) => l.startsWith("Version:"))?.replace(/\s+/g, " ") ?? lines[0] : lines[0] ?? "";
  } catch (err) {
    return `(${binary} ${args.join(" ")} failed: ${(err as Error).message.split("\n")[0]})`;
  }
}

const verdict = (check: string, status: Verdict["status"], message: string, fix?: string): Verdict =>
  (fix === undefined ? { check, status, message } : { check, status, message, fix });

// --- the host ---

async function kernel(ctx: DoctorContext): Promise<Verdict> {
  const release = (await readText(ctx.host("/proc/sys/kernel/osrelease")))?.trim();
  if (!release) return verdict("kernel", "fail", `cannot read ${ctx.host("/proc/sys/kernel/osrelease")}`, "mount /proc");
  const [major = 0, minor = 0] = release.split(/[.-]/).map(Number);
  const version = major * 1000 + minor;
  if (version < 4000) return verdict("kernel", "fail", `${release}: overlayfs with several lower layers needs Linux 4.0 or later`, "upgrade the kernel");
  if (version < 4015) return verdict("kernel", "warn", `${release}: older than 4.15; cgroup and overlayfs features may be missing`, "upgrade the kernel");
  return verdict("kernel", "pass", `Linux ${release}`);
}

async function cgroups(ctx: DoctorContext): Promise<Verdict> {
  const root = ctx.host("/sys/fs/cgroup");
  const v2 = await exists(join(root, "cgroup.controllers"));
  const missing: string[] = [];
  if (v2) {
    const controllers = ((await readText(join(root, "cgroup.controllers"))) ?? "").split(/\s+/);
    for (const c of ["cpu", "memory", "pids"]) if (!controllers.includes(c)) missing.push(c);
  } else {
    for (const c of ["cpu", "cpuacct", "memory", "pids", "devices", "freezer"]) if (!(await exists(join(root, c)))) missing.push(c);
  }
  const version = v2 ? "v2" : "v1";
  if (missing.length) {
    return verdict("cgroup", "fail", `cgroup ${version} without the ${missing.join(", ")} controller${missing.length > 1 ? "s" : ""}`,
      v2 ? `enable them in the root's cgroup.subtree_control` : `mount them under ${root} (cgroupfs-mount)`);
  }
  const driver = cgroupDriver(ctx.config);
  const drivers = new Set(Object.values(ctx.config.runtimes).map((h) => (h.systemd_cgroup ? "systemd" : "cgroupfs")));
  if (drivers.size > 1) {
    return verdict("cgroup", "fail", `runtime handlers disagree on the cgroup driver (${[...drivers].join(" and ")}); kubelet uses one`,
      "set the same systemd_cgroup on every [runtimes.*] table");
  }
  const systemd = await exists(ctx.host("/run/systemd/system"));
  if (driver === "systemd" && !systemd) {
    return verdict("cgroup", "fail", `cgroup ${version}; crib's config uses the systemd driver but systemd is not the init system`,
      `set systemd_cgroup = false in [runtimes.${ctx.config.default_runtime}] (and cgroupDriver: cgroupfs for kubelet)`);
  }
  const kubelet = await readText(ctx.host("/var/lib/kubelet/config.yaml"));
  const kubeletDriver = kubelet === undefined ? undefined : (/^cgroupDriver:\s*["']?(\w+)/m.exec(kubelet)?.[1] ?? "cgroupfs");
  if (kubeletDriver !== undefined && kubeletDriver !== driver) {
    return verdict("cgroup", "fail", `kubelet uses the ${kubeletDriver} cgroup driver, crib the ${driver} driver`,
      `set cgroupDriver: ${driver} in /var/lib/kubelet/config.yaml (see deploy/kubelet/), or change crib's systemd_cgroup`);
  }
  return verdict("cgroup", "pass", `cgroup ${version}, ${driver} driver${kubeletDriver ? ", as kubelet's" : ""}${driver === "cgroupfs" && systemd ? " (systemd runs: the systemd driver is recommended)" : ""}`);
}

// Built-in modules are not in /proc/modules; these show them anyway.
const BUILTIN_SIGNS: Record<string, (ctx: DoctorContext) => Promise<boolean>> = {
  overlay: async (ctx) => /\toverlay$/m.test((await readText(ctx.host("/proc/filesystems"))) ?? ""),
  br_netfilter: (ctx) => exists(ctx.host("/proc/sys/net/bridge")),
};

async function modules(ctx: DoctorContext): Promise<Verdict> {
  const loaded = ((await readText(ctx.host("/proc/modules"))) ?? "").split("\n").map((l) => l.split(" ")[0]);
  const missing: string[] = [];
  for (const name of ["overlay", "br_netfilter"]) {
    if (loaded.includes(name) || (await exists(ctx.host(`/sys/module/${name}`))) || (await BUILTIN_SIGNS[name]!(ctx))) continue;
    missing.push(name);
  }
  if (missing.length) {
    return verdict("modules", "fail", `${missing.join(", ")} not loaded`,
      `modprobe ${missing.join(" && modprobe ")}; persist in /etc/modules-load.d/crib.conf (deploy/setup.sh does both)`);
  }
  return verdict("modules", "pass", "overlay and br_netfilter loaded");
}

const SYSCTLS: Record<string, string> = { "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1" };

async function sysctls(ctx: DoctorContext): Promise<Verdict> {
  const wrong: string[] = [];
  for (const [key, want] of Object.entries(SYSCTLS)) {
    const value = (await readText(ctx.host(`/proc/sys/${key.replaceAll(".", "/")}`)))?.trim();
    if (value !== want) wrong.push(value === undefined ? `${key} is absent` : `${key} = ${value}`);
  }
  if (wrong.length) {
    const fix = Object.entries(SYSCTLS).map(([k, v]) => `${k}=${v}`).join(" ");
    return verdict("sysctls", "fail", `${wrong.join(", ")} (pods need forwarding and bridged traffic through iptables)`,
      `sysctl -w ${fix}; persist in /etc/sysctl.d/99-crib.conf (deploy/setup.sh does both; the bridge keys need br_netfilter)`);
  }
  return verdict("sysctls", "pass", Object.entries(SYSCTLS).map(([k, v]) => `${k} = ${v}`).join(", "));
}

async function nearestDir(path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) {
    if (await stat(p).then((s) => s.isDirectory(), () => false)) return p;
    if (p === "/") return "/";
  }
}

async function snapshotterRoot(ctx: DoctorContext): Promise<string | undefined> {
  if (!ctx.client) return undefined;
  const { plugins } = await ctx.client.introspection.Plugins({ filters: [] }, AbortSignal.timeout(5000));
  return plugins.find((p) => p.type === "io.containerd.snapshotter.v1" && p.id === SNAPSHOTTER)?.exports["root"];
}

async function overlayfs(ctx: DoctorContext): Promise<Verdict> {
  // Try where the snapshots live: overlayfs on overlayfs, NFS or some FUSE file systems fails.
  const near = (await snapshotterRoot(ctx).catch(() => undefined)) ?? join(ctx.config.root, "containerd");
  const base = await nearestDir(dirname(near)).then((d) => (d === "/" ? tmpdir() : d));
  const dir = await mkdtemp(join(base, ".crib-doctor-overlay-"));
  const [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map((n) => join(dir, n)) as [string, string, string, string];
  try {
    for (const d of [lower, upper, work, merged]) await mkdir(d);
    await writeFile(join(lower, "from-lower"), "lower\n");
    try {
      await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged], { timeout: 10_000 });
    } catch (err) {
      const detail = ((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
      return verdict("overlayfs", "fail", `cannot mount overlayfs in ${base}: ${detail}`,
        "run as root with the overlay module loaded, on a file system overlayfs accepts as upper layer (ext4, xfs with ftype=1; not overlayfs or NFS)");
    }
    try {
      await readFile(join(merged, "from-lower"));
      await writeFile(join(merged, "from-upper"), "upper\n");
      if (!(await exists(join(upper, "from-upper")))) throw new Error("a write through the mount did not reach the upper layer");
    } finally {
      await run("umount", [merged]).catch(() => run("umount", ["-l", merged]));
    }
    return verdict("overlayfs", "pass", `mounts and writes in ${base}`);
  } catch (err) {
    return verdict("overlayfs", "fail", `overlayfs in ${base}: ${(err as Error).message}`, "use a file system overlayfs supports for crib's root");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function oomScore(ctx: DoctorContext): Promise<Verdict> {
  const status = (await readText(ctx.host("/proc/self/status"))) ?? "";
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const own = (await readText(ctx.host("/proc/self/oom_score_adj")))?.trim() ?? "0";
  if (capEff === undefined) return verdict("oom-score", "warn", "cannot read CapEff from /proc/self/status");
  if ((BigInt(`0x${capEff}`) >> CAP_SYS_RESOURCE) & 1n) {
    return verdict("oom-score", "pass", "CAP_SYS_RESOURCE held: containers get kubelet's negative oom_score_adj (down to -997)");
  }
  return verdict("oom-score", "warn",
    `CAP_SYS_RESOURCE not held (CapEff ${capEff}): no container gets an oom_score_adj below crib's own (${own}); kubelet's lower values are raised to it`,
    "run crib as root in the host's user namespace (systemd: crib.service sets OOMScoreAdjust=-999)");
}

async function apparmor(ctx: DoctorContext): Promise<Verdict> {
  const sys = ctx.host("/sys");
  if (!(await appArmorEnabled(sys))) return verdict("apparmor", "pass", "AppArmor is not enabled in the kernel: containers run without AppArmor profiles");
  const profiles = await loadedProfiles(sys);
  if (profiles.has(DEFAULT_APPARMOR_PROFILE)) {
    return verdict("apparmor", "pass", `AppArmor enforcing; ${DEFAULT_APPARMOR_PROFILE} loaded (${profiles.size} profiles)`);
  }
  if (!(await which("apparmor_parser"))) {
    return verdict("apparmor", "fail", "AppArmor is enabled but apparmor_parser is missing: containers asking for RuntimeDefault would run unconfined", "apt-get install apparmor");
  }
  return verdict("apparmor", "warn", `AppArmor enforcing; ${DEFAULT_APPARMOR_PROFILE} not loaded yet (crib loads it when it starts)`);
}

export const hostChecks: ReadonlyArray<readonly [string, Check]> = [
  ["kernel", kernel], ["cgroup", cgroups], ["modules", modules], ["sysctls", sysctls], ["overlayfs", overlayfs], ["oom-score", oomScore], ["apparmor", apparmor],
];

// --- the stack ---

export interface ContainerdFound {
  address: string;
  kind: "configured" | "system" | "own";
  answers: boolean;
}

async function pings(address: string): Promise<boolean> {
  if (!(await socketAnswers(address))) return false;
  const c = new Containerd(address, "default");
  try {
    return await c.ping(AbortSignal.timeout(3000));
  } finally {
    c.close();
  }
}

/** The containerd crib would use, found the way `crib serve` finds it, without starting one. */
export async function locateContainerd(config: Config): Promise<ContainerdFound | undefined> {
  if (config.containerd.address) return { address: config.containerd.address, kind: "configured", answers: await pings(config.containerd.address) };
  if (await pings(SYSTEM_CONTAINERD)) return { address: SYSTEM_CONTAINERD, kind: "system", answers: true };
  const own = daemonAddress(join(config.state, "containerd"));
  if (await pings(own)) return { address: own, kind: "own", answers: true };
  return undefined;
}

async function runc(ctx: DoctorContext): Promise<Verdict> {
  const found: string[] = [];
  const missing: string[] = [];
  for (const [name, handler] of Object.entries(ctx.config.runtimes)) {
    const binary = handler.binary_name || "runc";
    const path = await which(binary);
    if (!path) missing.push(`${binary} (handler ${name})`);
    else found.push(`${name}: ${await versionLine(path, ["--version"])}`);
  }
  if (missing.length) return verdict("runc", "fail", `not found: ${missing.join(", ")}`, "apt-get install runc, or set binary_name to its path");
  return verdict("runc", "pass", found.join("; "));
}

async function shim(): Promise<Verdict> {
  const path = await which("containerd-shim-runc-v2");
  if (!path) return verdict("shim", "fail", "containerd-shim-runc-v2 not found in PATH", "apt-get install containerd");
  return verdict("shim", "pass", `${path}: ${await versionLine(path, ["-v"])}`);
}

async function containerdVersion(address: string): Promise<string> {
  const c = new Containerd(address, "default");
  try {
    const v = await c.version.Version({}, AbortSignal.timeout(3000));
    return `containerd ${v.version}`;
  } catch {
    return "containerd (version unknown)";
  } finally {
    c.close();
  }
}

async function containerd(ctx: DoctorContext): Promise<Verdict> {
  const found = ctx.containerd;
  if (found?.kind === "configured" && !found.answers) {
    return verdict("containerd", "fail", `the configured containerd at ${found.address} does not answer`,
      "start it, or empty [containerd] address so crib starts its own");
  }
  if (found) {
    const who = { configured: "the configured", system: "the system", own: "crib's own" }[found.kind];
    return verdict("containerd", "pass", `${who} containerd answers at ${found.address} (${await containerdVersion(found.address)})`);
  }
  const binary = await which(ctx.config.containerd.binary);
  if (!binary) {
    return verdict("containerd", "fail", `no containerd answers and crib cannot start its own: "${ctx.config.containerd.binary}" not found`,
      "apt-get install containerd, or set [containerd] binary");
  }
  return verdict("containerd", "pass", `none running; crib starts its own: ${binary} (${await versionLine(binary, ["--version"])})`);
}

async function cni(ctx: DoctorContext): Promise<Verdict> {
  const { conf_dir: confDir, bin_dirs: binDirs } = ctx.config.cni;
  ctx.logged.length = 0;
  const load = await loadNetworkConfig(confDir, ctx.log);
  if (!load.config) {
    const skipped = ctx.logged.length ? ` (${ctx.logged.join("; ")})` : "";
    return verdict("cni", "fail", `${load.reason}${skipped}`, `install deploy/cni/10-crib.conflist into ${confDir} (deploy/setup.sh does)`);
  }
  const config = load.config;
  const types = new Set<string>();
  for (const plugin of config.plugins) {
    types.add(plugin.type);
    const ipam = plugin["ipam"] as { type?: unknown } | undefined;
    if (typeof ipam?.type === "string" && ipam.type) types.add(ipam.type);
  }
  const missing: string[] = [];
  for (const type of types) if (!(await findPlugin(type, binDirs))) missing.push(type);
  if (missing.length) {
    return verdict("cni", "fail", `network "${config.name}" (${config.source}) needs ${missing.join(", ")}, not found in ${binDirs.join(", ")}`,
      "apt-get install containernetworking-plugins, or set [cni] bin_dirs");
  }
  return verdict("cni", "pass", `network "${config.name}" from ${config.source}; plugins ${[...types].join(", ")} found`);
}

async function sandboxImage(ctx: DoctorContext): Promise<Verdict> {
  const { image, image_archive: archive } = ctx.config.sandbox;
  if (ctx.client && (await findImage(ctx.client, image, AbortSignal.timeout(5000)))) {
    return verdict("sandbox-image", "pass", `${image} present in containerd namespace ${ctx.config.containerd.namespace}`);
  }
  const where = ctx.client ? "is not present" : "cannot be looked up (containerd is not running)";
  if (await archiveExists(archive)) {
    const names = await archiveImageNames(archive).catch((err: unknown) => [`(unreadable: ${(err as Error).message})`]);
    if (!names.includes(image)) {
      return verdict("sandbox-image", "warn", `${image} ${where}, and ${archive} holds ${names.join(", ") || "no named image"}, not it: crib pulls it for the first pod (needs the registry)`,
        `set [sandbox] image to the archive's image, or pre-pull ${image}`);
    }
    if (!(await which("ctr"))) return verdict("sandbox-image", "fail", `${image} ${where}; ${archive} is there but ctr, which imports it, is not`, "apt-get install containerd");
    return verdict("sandbox-image", "pass", `${image} ${where}; crib imports it from ${archive} when it is missing`);
  }
  return verdict("sandbox-image", "warn", `${image} ${where}, and there is no archive at ${archive || "(none configured)"}: crib pulls it for the first pod (needs the registry)`,
    "run deploy/setup.sh (it builds crib's pause into the archive), or pre-pull the image");
}

async function socket(ctx: DoctorContext): Promise<Verdict> {
  const path = ctx.config.listen;
  const dir = dirname(path);
  const info = await stat(dir).catch(() => undefined);
  if (!info) return verdict("socket", "pass", `${dir} does not exist yet; crib creates it (mode 0711)`);
  if (!info.isDirectory()) return verdict("socket", "fail", `${dir} is not a directory`, "remove it or set listen elsewhere");
  const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
  if (info.uid !== 0 || info.mode & 0o022) {
    return verdict("socket", "fail", `${dir} (owner uid ${info.uid}, mode ${mode}) can be written by others, who could replace crib's socket`,
      `chown root ${dir} && chmod go-w ${dir}`);
  }
  const file = await lstat(path).catch(() => undefined);
  if (!file) return verdict("socket", "pass", `${dir} (mode ${mode}); crib is not serving on ${path}`);
  if (!file.isSocket()) return verdict("socket", "fail", `${path} exists and is not a socket`, `remove ${path}`);
  const sockMode = (file.mode & 0o777).toString(8).padStart(4, "0");
  if (file.mode & 0o007) return verdict("socket", "fail", `${path} is open to every user (mode ${sockMode})`, `chmod 0660 ${path}`);
  if (await socketAnswers(path)) return verdict("socket", "pass", `crib serves on ${path} (mode ${sockMode})`);
  return verdict("socket", "pass", `${path} is a stale socket (crib is not running); crib replaces it at start`);
}

async function contentRoot(ctx: DoctorContext): Promise<string> {
  if (ctx.client) {
    const { plugins } = await ctx.client.introspection.Plugins({ filters: [] }, AbortSignal.timeout(5000)).catch(() => ({ plugins: [] }));
    const root = plugins.find((p) => p.type === "io.containerd.content.v1")?.exports["root"];
    if (root) return root;
  }
  return join(ctx.config.root, "containerd", "io.containerd.content.v1.content");
}

async function disk(ctx: DoctorContext): Promise<Verdict> {
  const root = await contentRoot(ctx);
  const dir = await nearestDir(root);
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  const total = fs.blocks * fs.bsize;
  const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;
  const text = `${gib(free)} free of ${gib(total)}, ${fs.ffree} inodes free, under ${dir}${dir === root ? "" : ` (for ${root})`}`;
  const fix = "free space on that file system, or remove unused images (crictl rmi --prune)";
  if (free < GiB || (fs.files > 0 && fs.ffree < 10_000)) return verdict("disk", "fail", text, fix);
  if (free < 5 * GiB || free < total * 0.1) return verdict("disk", "warn", text, fix);
  return verdict("disk", "pass", text);
}

export const runtimeChecks: ReadonlyArray<readonly [string, Check]> = [
  ["runc", runc], ["shim", shim], ["containerd", containerd], ["cni", cni], ["sandbox-image", sandboxImage], ["socket", socket], ["disk", disk],
];
