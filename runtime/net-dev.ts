// Interface counters of a network namespace: /proc/<pid>/net/dev shows the
// namespace of that process, so a pod's are read through its pause process
// without entering the namespace.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export interface InterfaceCounters {
  name: string;
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

/** The table of /proc/net/dev; the loopback interface is left out. */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const n = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (name === "lo" || n.length < 16 || n.some((x) => !Number.isFinite(x))) continue;
    out.push({
      name,
      rxBytes: n[0]!, rxPackets: n[1]!, rxErrors: n[2]!, rxDropped: n[3]!,
      txBytes: n[8]!, txPackets: n[9]!, txErrors: n[10]!, txDropped: n[11]!,
    });
  }
  return out;
}

/** The interfaces of `pid`'s network namespace; undefined when the process is gone. */
export async function readNetDev(pid: number, proc = "/proc"): Promise<InterfaceCounters[] | undefined> {
  if (!(pid > 0)) return undefined;
  try {
    return parseNetDev(await readFile(join(proc, String(pid), "net", "dev"), "utf8"));
  } catch {
    return undefined;
  }
}
