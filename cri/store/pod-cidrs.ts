// The pod CIDRs kubelet gave in UpdateRuntimeConfig. Kept in a file under
// crib's root so that pods created after a restart still get addresses from
// them (host-local's `ipRanges` capability, cri/sandbox-run.ts).
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { podCidrsToIpRanges, type IpRanges } from "../../cni/ip.js";
import { writeFileAtomic } from "../../runtime/atomic-file.js";

export class PodCidrs {
  #cidrs: readonly string[] = [];

  private constructor(readonly file: string) {}

  /** The saved CIDRs; none when the file is missing or unreadable (which is logged). */
  static async load(file: string, log: Logger): Promise<PodCidrs> {
    const self = new PodCidrs(file);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn({ file, err: String(err) }, "cannot read the saved pod CIDRs");
      return self;
    }
    try {
      const saved = (JSON.parse(text) as { podCidrs?: unknown }).podCidrs;
      if (!Array.isArray(saved) || saved.some((x) => typeof x !== "string")) throw new Error("podCidrs is not a list of strings");
      podCidrsToIpRanges(saved as string[]);
      self.#cidrs = saved as string[];
    } catch (err) {
      log.warn({ file, err: String(err) }, "ignoring the saved pod CIDRs");
    }
    return self;
  }

  get current(): readonly string[] {
    return this.#cidrs;
  }

  /** host-local's ipRanges for the CIDRs; undefined before kubelet gave any. */
  ipRanges(): IpRanges | undefined {
    return this.#cidrs.length > 0 ? podCidrsToIpRanges(this.#cidrs) : undefined;
  }

  /** Keeps validated CIDRs, on disk first. */
  async set(cidrs: readonly string[]): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    await writeFileAtomic(this.file, JSON.stringify({ podCidrs: cidrs }));
    this.#cidrs = [...cidrs];
  }
}
