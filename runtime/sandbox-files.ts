// The files a pod's containers share: /etc/hosts, /etc/resolv.conf,
// /etc/hostname, and a /dev/shm tmpfs (unless the pod uses the node's IPC).
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isMountPoint } from "./mount.js";
import { execFileOffThread } from "./process-runner.js";

const run = execFileOffThread;

export interface DnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

export interface SandboxFilesInput {
  dir: string;
  hostname: string;
  ips: string[];
  dns: DnsConfig | null;
  hostNetwork: boolean;
  /** "" when the pod uses the node's IPC namespace */
  shmDir: string;
  shmSizeBytes?: number;
  /** the shm tmpfs is mounted already (with the netns, in one process) */
  shmMounted?: boolean;
}

/** mount(8) options of the pod's /dev/shm tmpfs */
export const shmOptions = (sizeBytes = 64 * 1024 * 1024): string => `nodev,noexec,nosuid,mode=1777,size=${sizeBytes}`;

export interface SandboxFilePaths {
  hosts: string;
  resolvConf: string;
  hostname: string;
  shm: string;
}

export const filePaths = (dir: string, shmDir: string): SandboxFilePaths => ({
  hosts: join(dir, "hosts"),
  resolvConf: join(dir, "resolv.conf"),
  hostname: join(dir, "hostname"),
  shm: shmDir,
});

export function hostsFile(hostname: string, ips: string[]): string {
  const lines = [
    "# Kubernetes-managed hosts file (written by crib).",
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "fe00::0\tip6-mcastprefix",
    "fe00::1\tip6-allnodes",
    "fe00::2\tip6-allrouters",
  ];
  for (const ip of ips) lines.push(`${ip}\t${hostname}`);
  return `${lines.join("\n")}\n`;
}

export function resolvConf(dns: DnsConfig): string {
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(" ")}`);
  for (const s of dns.servers) lines.push(`nameserver ${s}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(" ")}`);
  return `${lines.join("\n")}\n`;
}

export async function writeSandboxFiles(input: SandboxFilesInput): Promise<SandboxFilePaths> {
  const paths = filePaths(input.dir, input.shmDir);
  await mkdir(input.dir, { recursive: true, mode: 0o755 });
  const hosts = input.hostNetwork ? await readFile("/etc/hosts", "utf8").catch(() => hostsFile(input.hostname, [])) : hostsFile(input.hostname, input.ips);
  const dns = input.dns && (input.dns.servers.length + input.dns.searches.length + input.dns.options.length > 0)
    ? resolvConf(input.dns)
    : await readFile("/etc/resolv.conf", "utf8").catch(() => "");
  await Promise.all([
    writeFile(paths.hosts, hosts, { mode: 0o644 }),
    writeFile(paths.resolvConf, dns, { mode: 0o644 }),
    writeFile(paths.hostname, `${input.hostname}\n`, { mode: 0o644 }),
  ]);
  if (input.shmDir && !input.shmMounted) {
    await mkdir(input.shmDir, { recursive: true, mode: 0o700 });
    await run("mount", ["-t", "tmpfs", "-o", shmOptions(input.shmSizeBytes), "shm", input.shmDir]);
  }
  return paths;
}

/** Unmounts the shm tmpfs and removes the files; absent → fine. */
export async function removeSandboxFiles(dir: string, shmDir: string): Promise<void> {
  if (shmDir) {
    // StopPodSandbox unmounted it already, as a rule: no umount process then
    await unmountShm(shmDir);
    await rm(shmDir, { recursive: true, force: true }).catch(() => undefined);
    // <state>/sandboxes/<id>: it holds the shm mount point only
    await rm(dirname(shmDir), { recursive: true, force: true }).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
}

/** Unmounts the shm tmpfs; not mounted (a second stop, the stop inside a remove) → no umount process. */
export async function unmountShm(shmDir: string): Promise<void> {
  if (shmDir && (await isMountPoint(shmDir))) await run("umount", [shmDir]).catch(() => undefined);
}
