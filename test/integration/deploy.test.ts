// deploy/: setup.sh installs crib on this machine and `--uninstall` leaves it
// exactly as it was; the systemd unit and the kubelet snippets agree with
// crib's defaults.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, mkdir, readdir, readFile, readlink, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { cgroupDriver, defaultConfig, renderDefaultConfig } from "../../cri/config.js";
import { archiveImageNames } from "../../runtime/image/archive.js";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const SETUP = join(REPO, "deploy", "setup.sh");
const VERSION = (JSON.parse(await readFile(join(REPO, "package.json"), "utf8")) as { version: string }).version;
const INSTALLED = ["/usr/local/bin/crib", "/usr/local/lib/crib", "/var/lib/crib/setup-manifest"];
const WATCHED = ["/etc/crib", "/etc/cni", "/etc/crictl.yaml", "/etc/sysctl.d", "/etc/modules-load.d", "/etc/systemd/system", ...INSTALLED];
const SYSCTLS = ["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"];

const LOCK = "/run/lock/crib-deploy-test";
const exists = (path: string) => lstat(path).then(() => true, () => false);

/** Every file, directory and link under the watched paths, with its mode and content hash, and the sysctls. */
async function snapshot(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (path: string): Promise<void> => {
    const s = await lstat(path).catch(() => undefined);
    if (!s) return;
    const mode = (s.mode & 0o7777).toString(8);
    if (s.isDirectory()) {
      out[path] = `dir ${mode}`;
      // crib's installed tree: whether it is there is what matters
      if (path === "/usr/local/lib/crib") return;
      for (const name of await readdir(path)) await walk(join(path, name));
    } else if (s.isSymbolicLink()) {
      out[path] = `link ${await readlink(path)}`;
    } else {
      out[path] = `file ${mode} ${createHash("sha256").update(await readFile(path)).digest("hex")}`;
    }
  };
  for (const path of WATCHED) await walk(path);
  for (const key of SYSCTLS) out[`sysctl ${key}`] = (await run("sysctl", ["-n", key]).catch(() => ({ stdout: "absent" }))).stdout.trim();
  return out;
}

async function setup(...args: string[]): Promise<string> {
  const { stdout } = await run("bash", [SETUP, ...args], { env: { ...process.env, CRIB_SETUP_SKIP_BUILD: "1" }, timeout: 300_000 });
  return stdout;
}

const alreadyInstalled = async (): Promise<string | false> => {
  for (const path of INSTALLED) if (await exists(path)) return `${path} exists: crib is installed on this machine, and the test would not leave it as it was`;
  return false;
};

/**
 * Runs `fn` while holding a lock of this machine's, so that two runs of this
 * suite at once (two checkouts on one shared node) do not install crib over each
 * other. A lock whose holder died is taken over.
 */
async function exclusively<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      await mkdir(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number(await readFile(join(LOCK, "pid"), "utf8").catch(() => "0"));
      const alive = holder > 0 && (() => { try { process.kill(holder, 0); return true; } catch { return false; } })();
      const age = Date.now() - ((await lstat(LOCK).catch(() => undefined))?.mtimeMs ?? 0);
      if (!alive && age > 2000) await rm(LOCK, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`${LOCK} held by pid ${holder} for 15 minutes`);
      else await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    await writeFile(join(LOCK, "pid"), String(process.pid));
    return await fn();
  } finally {
    await rm(LOCK, { recursive: true, force: true });
  }
}

describe("deploy/setup.sh", () => {
  // one installing test on this machine at a time; and none if crib is really installed here
  const installing = (name: string, fn: () => Promise<void>) =>
    it(name, async (t) => exclusively(async () => {
      const installed = await alreadyInstalled();
      if (installed) return t.skip(installed);
      await fn();
    }));

  installing("installs crib, is idempotent, and --uninstall leaves the machine as it was", async () => {
    const before = await snapshot();
    const hadNetwork = (await readdir("/etc/cni/net.d").catch(() => [] as string[])).some((n) => /\.(conflist|conf|json)$/.test(n));
    const hadCrictl = await exists("/etc/crictl.yaml");
    const hadConfig = await exists("/etc/crib/config.toml");
    try {
      const out = await setup();
      assert.match(out, new RegExp(`installed crib ${VERSION.replaceAll(".", "\\.")} in /usr/local/lib/crib`));

      const { stdout: version } = await run("/usr/local/bin/crib", ["version"]);
      assert.equal(version, `crib ${VERSION}\nCRI API v1\n`);
      if (!hadConfig) assert.equal(await readFile("/etc/crib/config.toml", "utf8"), renderDefaultConfig());
      if (!hadNetwork) {
        assert.equal(await readFile("/etc/cni/net.d/10-crib.conflist", "utf8"), await readFile(join(REPO, "deploy/cni/10-crib.conflist"), "utf8"));
      }
      if (!hadCrictl) assert.match(await readFile("/etc/crictl.yaml", "utf8"), /^runtime-endpoint: unix:\/\/\/run\/crib\/crib\.sock$/m);
      assert.match(await readFile("/etc/modules-load.d/crib.conf", "utf8"), /^overlay\nbr_netfilter\n/m);
      assert.match(await readFile("/etc/sysctl.d/99-crib.conf", "utf8"), /^net\.ipv4\.ip_forward = 1\nnet\.bridge\.bridge-nf-call-iptables = 1\n/m);
      for (const key of SYSCTLS) assert.equal((await run("sysctl", ["-n", key])).stdout.trim(), "1", key);
      assert.equal(await readFile("/etc/systemd/system/crib.service", "utf8"), await readFile(join(REPO, "deploy/systemd/crib.service"), "utf8"));
      if (await exists("/usr/bin/systemd-analyze")) await run("systemd-analyze", ["verify", "/etc/systemd/system/crib.service"]);
      assert.deepEqual(await archiveImageNames("/usr/local/lib/crib/pause.tar"), [defaultConfig().sandbox.image], "the pause archive holds the sandbox image");
      assert.equal(defaultConfig().sandbox.image_archive, "/usr/local/lib/crib/pause.tar");

      const { stdout: doctorJson } = await run("/usr/local/bin/crib", ["doctor", "--json"]).catch((e: { stdout: string }) => e);
      const checks = (JSON.parse(doctorJson) as { checks: Array<{ check: string; status: string; message: string }> }).checks;
      for (const name of ["modules", "sysctls", "runc", "shim", "containerd"]) {
        assert.equal(checks.find((c) => c.check === name)?.status, "pass", `installed crib's doctor: ${name}`);
      }
      if (!hadNetwork) assert.equal(checks.find((c) => c.check === "cni")?.status, "pass");

      const manifest = await readFile("/var/lib/crib/setup-manifest", "utf8");
      const installed = await snapshot();
      await setup();
      assert.equal(await readFile("/var/lib/crib/setup-manifest", "utf8"), manifest, "a second run records nothing new");
      const again = await snapshot();
      assert.deepEqual(again, installed, "a second run changes nothing");
    } finally {
      await setup("--uninstall");
    }
    assert.deepEqual(await snapshot(), before);
  });

  installing("leaves an existing CNI config and crictl.yaml alone, also when uninstalling", async () => {
    const before = await snapshot();
    const made: string[] = [];
    for (const dir of ["/etc/cni", "/etc/cni/net.d"]) {
      if (!(await exists(dir))) {
        await mkdir(dir);
        made.push(dir);
      }
    }
    const other = "/etc/cni/net.d/05-test-other.conflist";
    await writeFile(other, `${JSON.stringify({ cniVersion: "1.0.0", name: "other", plugins: [{ type: "bridge" }] })}\n`);
    const crictl = !(await exists("/etc/crictl.yaml"));
    if (crictl) await writeFile("/etc/crictl.yaml", "runtime-endpoint: unix:///run/containerd/containerd.sock\n");
    try {
      const theirs = await snapshot();
      const out = await setup();
      // a shared node may hold other runtimes' configs too: setup names them all, and leaves them all alone
      assert.match(out, /\/etc\/cni\/net\.d has a network config \([^)]*\b05-test-other\.conflist\b[^)]*\); left alone/);
      assert.match(out, /kept \/etc\/crictl\.yaml/);
      assert.equal(await exists("/etc/cni/net.d/10-crib.conflist"), false);
      const installed = await snapshot();
      for (const path of [other, "/etc/crictl.yaml", "/etc/cni/net.d"]) assert.equal(installed[path], theirs[path], path);
      await setup("--uninstall");
      assert.deepEqual(await snapshot(), theirs, "uninstall removes only what setup added");
    } finally {
      // a failed assertion must not leave crib installed (a no-op once uninstalled)
      await setup("--uninstall").catch(() => undefined);
      await rm(other, { force: true });
      if (crictl) await rm("/etc/crictl.yaml", { force: true });
      for (const dir of made.reverse()) await rmdir(dir).catch(() => undefined);
    }
    assert.deepEqual(await snapshot(), before);
  });

  it("explains its options and refuses unknown ones", async () => {
    const { stdout } = await run("bash", [SETUP, "--help"]);
    assert.match(stdout, /--uninstall \[--remove-packages\]/);
    await assert.rejects(run("bash", [SETUP, "--bogus"]), (err: { stderr: string }) => /unknown argument --bogus/.test(err.stderr));
  });
});

describe("deploy/ files", () => {
  it("the systemd unit waits for readiness, delegates cgroups and keeps containers across restarts", async () => {
    const unit = await readFile(join(REPO, "deploy/systemd/crib.service"), "utf8");
    for (const line of ["Type=simple", "Delegate=yes", "KillMode=process", "Restart=always", "LimitNOFILE=1048576",
      "ExecStart=/usr/local/bin/crib serve --config /etc/crib/config.toml",
      "ExecStartPost=/usr/local/bin/crib wait-ready --config /etc/crib/config.toml --timeout 2m"]) {
      assert.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"), line);
    }
    assert.match(unit, /^After=.*containerd\.service/m);
    assert.doesNotMatch(unit, /^(Requires|Wants|BindsTo)=.*containerd/m, "a system containerd is used when there, never required");
  });

  it("the kubelet snippets point at crib's socket with crib's cgroup driver", async () => {
    const config = defaultConfig();
    const endpoint = `unix://${config.listen}`;
    const kubelet = await readFile(join(REPO, "deploy/kubelet/kubelet-config.yaml"), "utf8");
    assert.match(kubelet, new RegExp(`^containerRuntimeEndpoint: ${endpoint}$`, "m"));
    assert.match(kubelet, new RegExp(`^cgroupDriver: ${cgroupDriver(config)}$`, "m"));
    const patch = await readFile(join(REPO, "deploy/kubelet/kubeadm-patches/kubeletconfiguration+merge.yaml"), "utf8");
    assert.match(patch, new RegExp(`^containerRuntimeEndpoint: ${endpoint}$`, "m"));
    assert.match(patch, new RegExp(`^cgroupDriver: ${cgroupDriver(config)}$`, "m"));
    assert.match(await readFile(join(REPO, "deploy/kubelet/kubelet-flags.env"), "utf8"), new RegExp(`--container-runtime-endpoint=${endpoint}\\b`));
  });
});
