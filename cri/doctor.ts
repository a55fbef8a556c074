// `crib doctor`: is this node able to run crib, and did crib leave anything
// behind? Each check gives a one-line verdict and, when it is not a pass, the
// fix. Warnings are passes with a caveat; any failure makes the exit code 1.
// `--fix-leaks` removes what the leak checks found, and only that.
import { pino, type Logger } from "pino";
import type { Config } from "./config.js";
import { Containerd } from "../runtime/containerd/client.js";
import { hostChecks, runtimeChecks, locateContainerd, type ContainerdFound } from "./doctor-checks.js";
import { leakChecks } from "./doctor-leaks.js";
import { DEFAULT_NETNS_PREFIX } from "../runtime/netns.js";

export type Status = "pass" | "warn" | "fail" | "skip";

export const LEAK_KINDS = ["container", "cni-cache", "ip-reservation", "iptables", "netns", "mount", "state-dir", "snapshot", "lease", "shim"] as const;
export type LeakKind = (typeof LEAK_KINDS)[number];

/** Something crib left behind, with the one way to remove it. */
export interface Leak {
  kind: LeakKind;
  /** what it is: a netns name, a reservation file, a mount point, a snapshot key, a shim's pid… */
  name: string;
  /** why it is a leak */
  detail: string;
  remove(signal: AbortSignal): Promise<void>;
}

export interface Verdict {
  check: string;
  status: Status;
  message: string;
  fix?: string;
  leaks?: Leak[];
}

export interface DoctorOptions {
  config: Config;
  /** Prefix for /proc and /sys reads, so tests can present a different host. */
  rootPrefix?: string;
  /** Name prefix of crib's network namespaces. */
  netnsPrefix?: string;
  /** Leftovers younger than this may belong to a RunPodSandbox in progress. */
  leakAgeMs?: number;
  fixLeaks?: boolean;
  /** Only the leak audit (no host or runtime checks). */
  leaksOnly?: boolean;
}

/** What the checks share: the options, the host paths, and containerd when it answers. */
export interface DoctorContext {
  config: Config;
  netnsPrefix: string;
  leakAgeMs: number;
  /** A host path, under the root prefix. */
  host(path: string): string;
  containerd: ContainerdFound | undefined;
  /** A client in crib's namespace, when containerd answers. */
  client: Containerd | undefined;
  /** Warnings that libraries log (invalid CNI files), to quote in verdicts. */
  log: Logger;
  logged: string[];
}

export interface FixResult {
  leak: string;
  removed: boolean;
  error?: string;
}

export interface DoctorReport {
  ok: boolean;
  verdicts: Verdict[];
  fixed: FixResult[];
}

export type Check = (ctx: DoctorContext) => Promise<Verdict>;

function capturingLogger(into: string[]): Logger {
  return pino({ level: "warn" }, {
    write(line: string) {
      const entry = JSON.parse(line) as { msg?: string; file?: string; reason?: string; err?: { message?: string } };
      into.push([entry.file, entry.reason ?? entry.err?.message ?? entry.msg].filter(Boolean).join(": "));
    },
  });
}

async function guarded(name: string, check: Check, ctx: DoctorContext): Promise<Verdict> {
  try {
    return await check(ctx);
  } catch (err) {
    return { check: name, status: "fail", message: `the check itself failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const prefix = options.rootPrefix ?? "";
  const logged: string[] = [];
  const ctx: DoctorContext = {
    config: options.config,
    netnsPrefix: options.netnsPrefix ?? options.config?.sandbox.netns_prefix ?? DEFAULT_NETNS_PREFIX,
    leakAgeMs: options.leakAgeMs ?? 5 * 60_000,
    host: (path) => (prefix ? `${prefix.replace(/\/+$/, "")}${path}` : path),
    containerd: undefined,
    client: undefined,
    log: capturingLogger(logged),
    logged,
  };
  ctx.containerd = await locateContainerd(options.config);
  if (ctx.containerd?.answers) ctx.client = new Containerd(ctx.containerd.address, options.config.containerd.namespace);
  try {
    const verdicts: Verdict[] = [];
    const checks = options.leaksOnly ? leakChecks : [...hostChecks, ...runtimeChecks, ...leakChecks];
    for (const [name, check] of checks) verdicts.push(await guarded(name, check, ctx));
    const fixed = options.fixLeaks ? await fixLeaks(verdicts) : [];
    return { ok: verdicts.every((v) => v.status !== "fail"), verdicts, fixed };
  } finally {
    ctx.client?.close();
  }
}

/** Removes every leak found; a leak check whose leaks are all gone passes. */
async function fixLeaks(verdicts: Verdict[]): Promise<FixResult[]> {
  const results: FixResult[] = [];
  for (const verdict of verdicts) {
    if (!verdict.leaks?.length) continue;
    const failed: string[] = [];
    for (const leak of verdict.leaks) {
      const what = `${leak.kind} ${leak.name}`;
      try {
        await leak.remove(AbortSignal.timeout(30_000));
        results.push({ leak: what, removed: true });
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        failed.push(`${what}: ${error}`);
        results.push({ leak: what, removed: false, error });
      }
    }
    const removed = verdict.leaks.length - failed.length;
    verdict.status = failed.length ? "fail" : "pass";
    verdict.message = failed.length
      ? `removed ${removed} of ${verdict.leaks.length}; could not remove ${failed.join("; ")}`
      : `removed ${removed} leaked ${verdict.leaks[0]!.kind}${removed === 1 ? "" : "s"}`;
  }
  return results;
}

const LABEL: Record<Status, string> = { pass: "ok  ", warn: "warn", fail: "FAIL", skip: "skip" };

export function formatReport(report: DoctorReport): string {
  const width = Math.max(...report.verdicts.map((v) => v.check.length));
  const lines: string[] = [];
  for (const v of report.verdicts) {
    lines.push(`${LABEL[v.status]}  ${v.check.padEnd(width)}  ${v.message}${v.fix && v.status !== "pass" ? ` — fix: ${v.fix}` : ""}`);
    for (const leak of v.status === "pass" ? [] : v.leaks ?? []) lines.push(`${" ".repeat(width + 8)}${leak.kind} ${leak.name}: ${leak.detail}`);
  }
  for (const f of report.fixed) lines.push(f.removed ? `removed ${f.leak}` : `could not remove ${f.leak}: ${f.error}`);
  const failures = report.verdicts.filter((v) => v.status === "fail").length;
  lines.push(failures === 0 ? "crib doctor: no problems found" : `crib doctor: ${failures} problem${failures === 1 ? "" : "s"} found`);
  return `${lines.join("\n")}\n`;
}

/** The leak audit as data: leaks per kind (and which), checks that could not run. For the chaos harness and tests. */
export interface LeakAudit {
  ok: boolean;
  counts: Record<LeakKind, number>;
  leaks: Array<{ kind: LeakKind; name: string; detail: string }>;
  /** checks that failed to run or were skipped (containerd down…): not a clean bill */
  unchecked: string[];
  fixed: FixResult[];
}

export async function auditLeaks(options: Omit<DoctorOptions, "leaksOnly">): Promise<LeakAudit> {
  return leakAudit(await runDoctor({ ...options, leaksOnly: true }));
}

export function leakAudit(report: DoctorReport): LeakAudit {
  const counts = Object.fromEntries(LEAK_KINDS.map((k) => [k, 0])) as Record<LeakKind, number>;
  const leaks: LeakAudit["leaks"] = [];
  const unchecked: string[] = [];
  for (const v of report.verdicts) {
    if (!v.check.startsWith("leaked-")) continue;
    if (v.status === "skip" || (v.status === "fail" && !v.leaks?.length)) unchecked.push(`${v.check}: ${v.message}`);
    // after --fix-leaks, a passing check's leaks are gone
    for (const l of v.status === "pass" ? [] : v.leaks ?? []) {
      counts[l.kind]++;
      leaks.push({ kind: l.kind, name: l.name, detail: l.detail });
    }
  }
  return { ok: leaks.length === 0 && unchecked.length === 0, counts, leaks, unchecked, fixed: report.fixed };
}

export function reportJson(report: DoctorReport): string {
  return `${JSON.stringify({
    ok: report.ok,
    checks: report.verdicts.map(({ leaks, ...v }) => ({ ...v, ...(leaks ? { leaks: leaks.map(({ kind, name, detail }) => ({ kind, name, detail })) } : {}) })),
    fixed: report.fixed,
  }, null, 2)}\n`;
}
