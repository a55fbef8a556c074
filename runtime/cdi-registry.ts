// The CDI spec files of the configured directories, read when a container asks
// for CDI devices and kept while their mtime, ctime, size and inode stay the same.
// Invalid files are skipped with a warning naming them, as the reference registry does.
import { readFile, readdir, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import type { Logger } from "pino";
import { deviceAt } from "./spec/devices.js";
import {
  CDI_SPEC_EXTENSIONS,
  cdiEditsFor,
  indexCdiSpecs,
  needsHostNode,
  parseCdiSpec,
  resolveCdiNode,
  type CdiDeviceNode,
  type CdiResolution,
  type CdiSpec,
  type LoadedCdiSpec,
} from "./spec/cdi.js";
import type { LinuxDevice } from "./spec/types.js";

interface CachedFile {
  version: string;
  /** undefined: the file is invalid. */
  spec: CdiSpec | undefined;
}

export class CdiRegistry {
  readonly #dirs: readonly string[];
  readonly #log: Logger;
  readonly #files = new Map<string, CachedFile>();

  constructor(dirs: readonly string[], log: Logger) {
    this.#dirs = dirs;
    this.#log = log;
  }

  /**
   * The edits of the named devices with their device nodes completed from the
   * host; undefined when none is asked for. INVALID_ARGUMENT names a device
   * that is unknown, malformed or whose host node is missing.
   */
  async resolve(names: readonly string[]): Promise<CdiResolution | undefined> {
    if (names.length === 0) return undefined;
    const { specs, skipped } = await this.#load();
    const edits = cdiEditsFor(indexCdiSpecs(specs), names, { dirs: this.#dirs, skipped });
    const resolved = await Promise.all(edits.map(async (e) => ({
      ...e,
      deviceNodes: await Promise.all(e.deviceNodes.map(async (node) => resolveCdiNode(e.device, node, await hostNode(node)))),
    })));
    return { devices: [...names], edits: resolved };
  }

  /** Every valid spec file, by directory then name, and the invalid ones. */
  async #load(): Promise<{ specs: LoadedCdiSpec[]; skipped: string[] }> {
    const specs: LoadedCdiSpec[] = [];
    const skipped: string[] = [];
    const present = new Set<string>();
    for (const [priority, dir] of this.#dirs.entries()) {
      for (const file of await this.#specFiles(dir)) {
        present.add(file);
        const spec = await this.#read(file);
        if (spec === undefined) skipped.push(file);
        else if (spec !== null) specs.push({ spec, priority });
      }
    }
    for (const file of this.#files.keys()) if (!present.has(file)) this.#files.delete(file);
    return { specs, skipped };
  }

  async #specFiles(dir: string): Promise<string[]> {
    try {
      const names = await readdir(dir);
      return names.filter((n) => CDI_SPEC_EXTENSIONS.includes(extname(n))).sort().map((n) => join(dir, n));
    } catch (err) {
      // a missing directory is the usual case: no vendor installed specs there
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.#log.warn({ dir, err: (err as Error).message }, "CDI spec directory unreadable");
      return [];
    }
  }

  /** The spec in `file`; undefined when invalid, null when it is no regular file (or vanished). */
  async #read(file: string): Promise<CdiSpec | undefined | null> {
    const st = await stat(file, { bigint: true }).catch(() => undefined);
    if (st === undefined || !st.isFile()) return null;
    const version = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const cached = this.#files.get(file);
    if (cached?.version === version) return cached.spec;
    let spec: CdiSpec | undefined;
    try {
      spec = parseCdiSpec(file, await readFile(file, "utf8"));
    } catch (err) {
      this.#log.warn({ file, err: (err as Error).message }, "CDI spec file skipped");
    }
    this.#files.set(file, { version, spec });
    return spec;
  }
}

/** The host's node behind a CDI device node when the spec leaves something to fill in; undefined when it is missing. */
async function hostNode(node: CdiDeviceNode): Promise<LinuxDevice | undefined> {
  if (!needsHostNode(node)) return undefined;
  return deviceAt(node.hostPath ?? node.path, node.path).catch(() => undefined);
}
