// The CRI socket file: its directory made, a stale file from a crash replaced,
// and a second crib on the same path refused.
import { connect } from "node:net";
import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import { dirname } from "node:path";

/** True when something accepts connections on the unix socket at `path`. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

export async function prepareSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o711 });
  const existing = await lstat(path).catch(() => undefined);
  if (!existing) return;
  if (!existing.isSocket()) throw new Error(`${path} exists and is not a socket; remove it or choose another --listen path`);
  if (await socketAnswers(path)) throw new Error(`another process is already serving on ${path} (is crib running?)`);
  await unlink(path); // stale, left by a crash
}

export const restrictSocket = (path: string): Promise<void> => chmod(path, 0o660);

export async function removeSocket(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}
