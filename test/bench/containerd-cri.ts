// containerd's own CRI plugin as the baseline crib is measured against: a
// second private containerd with the CRI plugin enabled (own root, state,
// socket, CNI conf dir and bridge), the same pause and busybox images imported
// into its k8s.io namespace, and a CriClient on its socket. close() removes
// every pod through the CRI, stops containerd, kills any shim it left (by PID),
// unmounts, and deletes the bridge and the directory.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { CriClient } from "../fixtures/cri-client.js";
import { unmountUnder } from "../fixtures/containerd.js";
import { BUSYBOX_REF, PAUSE_REF, busyboxImage, importImage, pauseImage } from "../fixtures/local-images.js";
import type * as cri from "../../proto/gen/cri/types.js";

const run = promisify(execFile);
const NAMESPACE = "k8s.io";

/** A /24 under 10.198.0.0/16 that no route on the host uses yet. */
async function freeSubnet(): Promise<string> {
  const { stdout } = await run("ip", ["-4", "route"]);
  for (;;) {
    const net = `10.198.${1 + Math.floor(Math.random() * 250)}.`;
    if (!stdout.includes(net)) return `${net}0/24`;
  }
}

export class ContainerdCri {
  #child: ChildProcess | undefined;
  client!: CriClient;

  private constructor(readonly dir: string, readonly bridge: string, readonly subnet: string) {}

  get address(): string {
    return join(this.dir, "containerd.sock");
  }

  get logPath(): string {
    return join(this.dir, "containerd.log");
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  configText(): string {
    const q = JSON.stringify;
    const cri = `[plugins."io.containerd.grpc.v1.cri"]`;
    return [
      "version = 2",
      `root = ${q(join(this.dir, "root"))}`,
      `state = ${q(join(this.dir, "state"))}`,
      "oom_score = 0",
      "[grpc]",
      `  address = ${q(this.address)}`,
      "[ttrpc]",
      `  address = ${q(`${this.address}.ttrpc`)}`,
      "[debug]",
      `  address = ""`,
      `  level = "warn"`,
      "[metrics]",
      `  address = ""`,
      cri,
      `  sandbox_image = ${q(PAUSE_REF)}`,
      `  stream_server_address = "127.0.0.1"`,
      `  stream_server_port = "0"`,
      "  restrict_oom_score_adj = true",
      "  disable_apparmor = true",
      "  enable_selinux = false",
      "  max_concurrent_downloads = 3",
      `${cri.slice(0, -1)}.cni]`,
      `  bin_dir = "/usr/lib/cni"`,
      `  conf_dir = ${q(join(this.dir, "net.d"))}`,
      "  max_conf_num = 1",
      `${cri.slice(0, -1)}.registry]`,
      `  config_path = ${q(join(this.dir, "certs.d"))}`,
      `${cri.slice(0, -1)}.containerd]`,
      `  snapshotter = "overlayfs"`,
      `  default_runtime_name = "runc"`,
      `${cri.slice(0, -1)}.containerd.runtimes.runc]`,
      `  runtime_type = "io.containerd.runc.v2"`,
      "",
    ].join("\n");
  }

  static async start(): Promise<ContainerdCri> {
    const dir = await mkdtemp("/tmp/crib-ctdcri-");
    const self = new ContainerdCri(dir, `cc${randomBytes(3).toString("hex")}`, await freeSubnet());
    try {
      await mkdir(join(dir, "net.d"), { recursive: true });
      await mkdir(join(dir, "pods"), { recursive: true });
      await writeFile(join(dir, "config.toml"), self.configText());
      const logFile = await open(self.logPath, "a");
      self.#child = spawn("containerd", ["--config", join(dir, "config.toml")], { stdio: ["ignore", logFile.fd, logFile.fd] });
      await logFile.close();
      self.client = new CriClient(self.address);
      await self.#waitReady();
      await importImage(self.address, NAMESPACE, PAUSE_REF, await pauseImage());
      await importImage(self.address, NAMESPACE, BUSYBOX_REF, await busyboxImage());
      await self.#writeNetwork();
      return self;
    } catch (err) {
      await self.close();
      throw err;
    }
  }

  async #waitReady(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.#child?.exitCode !== null) throw new Error(`containerd exited: ${await readFile(this.logPath, "utf8").catch(() => "")}`);
      const ok = await this.client.runtime.Version({}, { timeoutMs: 1000 }).then(() => true, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`containerd's CRI did not answer within 30 s (log: ${this.logPath})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async #writeNetwork(): Promise<void> {
    const list = {
      cniVersion: "1.0.0", name: "ctd-bench",
      plugins: [
        { type: "bridge", bridge: this.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
          ipam: { type: "host-local", ranges: [[{ subnet: this.subnet }]], dataDir: join(this.dir, "ipam"), routes: [{ dst: "0.0.0.0/0" }] } },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    };
    await writeFile(join(this.dir, "net.d", "10-bench.conflist"), JSON.stringify(list));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const s = await this.client.runtime.Status({});
      if (s.status?.conditions.find((c) => c.type === "NetworkReady")?.status) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("containerd's CRI did not load the CNI config");
  }

  sandboxConfig(name: string): cri.PodSandboxConfig__Input {
    return {
      metadata: { name, namespace: "ctd-bench", uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      log_directory: join(this.dir, "pods", name),
      linux: {},
    };
  }

  /** Pids of the shims this containerd started (they name its socket in their arguments). */
  async shimPids(): Promise<number[]> {
    const pids: number[] = [];
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const args = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).split("\0");
      if (args[0]?.includes("containerd-shim") && args.includes(this.address)) pids.push(Number(entry));
    }
    return pids;
  }

  async close(): Promise<void> {
    if (this.client) {
      const pods = await this.client.runtime.ListPodSandbox({}, { timeoutMs: 10_000 }).then((r) => r.items, () => []);
      for (const pod of pods) {
        await this.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id }, { timeoutMs: 30_000 }).catch(() => undefined);
        await this.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id }, { timeoutMs: 30_000 }).catch(() => undefined);
      }
      this.client.close();
    }
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    for (const pid of await this.shimPids()) {
      try { process.kill(pid, "SIGKILL"); } catch { /* already gone */ }
    }
    await unmountUnder(this.dir);
    await run("ip", ["link", "del", this.bridge]).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
