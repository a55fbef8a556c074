// The commands for running crib on a node: `crib doctor`, `crib bootstrap`
// and `crib wait-ready` (systemd's readiness check). main.ts registers them.
import { hostname } from "node:os";
import type { Command } from "commander";
import { ConfigError, parseDuration, type Config } from "./config.js";

export interface CommandKit<F> {
  /** adds the config flags that `crib serve` takes */
  withConfigFlags: (cmd: Command) => Command;
  /** the configuration from --config and the flags */
  configFrom: (flags: F) => Promise<Config>;
  version: string;
}

function fail(message: string): never {
  process.stderr.write(`crib: ${message}\n`);
  process.exit(1);
}

async function loadOrExit<F>(kit: CommandKit<F>, flags: F): Promise<Config> {
  try {
    return await kit.configFrom(flags);
  } catch (err) {
    if (err instanceof ConfigError) fail(`bad configuration: ${err.message}`);
    throw err;
  }
}

function duration(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) fail(`${flag}: expected a duration like "30s", "5m" or "1h", got "${text}"`);
  return ms;
}

interface DoctorFlags {
  json?: boolean;
  fixLeaks?: boolean;
  leaks?: boolean;
  rootPrefix?: string;
  netnsPrefix?: string;
  leakAge: string;
}

interface BootstrapFlags {
  kubeconfig: string;
  nodeName: string;
  timeout: string;
}

interface WaitFlags {
  timeout: string;
}

export function registerNodeCommands<F extends object>(program: Command, kit: CommandKit<F>): void {
  kit.withConfigFlags(program.command("doctor").description("check that this node can run crib, and find what crib left behind"))
    .option("--json", "print the verdicts as JSON")
    .option("--fix-leaks", "remove the leaks found (IPs through CNI DEL): netns, IP reservations, CNI cache entries, iptables rules, mounts, state directories, snapshots, container records, leases, shims")
    .option("--leaks", "only the leak audit of crib's own objects (with --json: the audit as data)")
    .option("--root-prefix <dir>", "read /proc and /sys under this directory (default $CRIB_ROOT_PREFIX)")
    .option("--netns-prefix <prefix>", "name prefix of crib's network namespaces (default: the config's sandbox.netns_prefix)")
    .option("--leak-age <duration>", "leftovers younger than this may belong to a sandbox being created, and are not leaks", "5m")
    .action(async (flags: F & DoctorFlags) => {
      const config = await loadOrExit(kit, flags);
      const { runDoctor, formatReport, reportJson, leakAudit } = await import("./doctor.js");
      const rootPrefix = flags.rootPrefix ?? process.env["CRIB_ROOT_PREFIX"] ?? "";
      const report = await runDoctor({
        config, rootPrefix, fixLeaks: flags.fixLeaks ?? false, leaksOnly: flags.leaks ?? false,
        leakAgeMs: duration("--leak-age", flags.leakAge),
        ...(flags.netnsPrefix ? { netnsPrefix: flags.netnsPrefix } : {}),
      });
      const json = (): string => (flags.leaks ? `${JSON.stringify(leakAudit(report), null, 2)}\n` : reportJson(report));
      process.stdout.write(flags.json ? json() : formatReport(report));
      process.exit(report.ok ? 0 : 1);
    });

  kit.withConfigFlags(program.command("bootstrap").description("after kubelet points at crib: wait for the Node, render CNI ranges from its podCIDRs, create RuntimeClasses, wait for Ready"))
    .option("--kubeconfig <file>", "kubeconfig to reach the API server with", "/etc/kubernetes/kubelet.conf")
    .option("--node-name <name>", "the Node's name", hostname())
    .option("--timeout <duration>", "how long to wait for the Node to register, and then to turn Ready", "5m")
    .action(async (flags: F & BootstrapFlags) => {
      const config = await loadOrExit(kit, flags);
      const { bootstrap, BootstrapError } = await import("./bootstrap.js");
      try {
        const { problems } = await bootstrap({
          config, kubeconfig: flags.kubeconfig, nodeName: flags.nodeName, timeoutMs: duration("--timeout", flags.timeout),
          version: kit.version, out: (line) => process.stdout.write(`${line}\n`),
        });
        for (const p of problems) process.stderr.write(`crib bootstrap: ${p}\n`);
        process.exit(problems.length ? 1 : 0);
      } catch (err) {
        if (err instanceof BootstrapError) fail(`bootstrap: ${err.message}`);
        throw err;
      }
    });

  kit.withConfigFlags(program.command("wait-ready").description("wait until crib serves the CRI on its socket (systemd's ExecStartPost)"))
    .option("--timeout <duration>", "give up after this long", "2m")
    .action(async (flags: F & WaitFlags) => {
      const config = await loadOrExit(kit, flags);
      const { socketAnswers } = await import("./socket.js");
      const deadline = Date.now() + duration("--timeout", flags.timeout);
      while (!(await socketAnswers(config.listen))) {
        if (Date.now() > deadline) fail(`crib is not serving on ${config.listen} after ${flags.timeout}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
}
