// Stdio FIFOs between crib and a containerd shim. Reads go through libuv's pipe
// handles (epoll on a non-blocking fd), never through its thread pool, so many
// containers' logs never starve other work.
import { execFile } from "node:child_process";
import { close as closeFd, constants, open as openFd } from "node:fs";
import { rm } from "node:fs/promises";
import { Socket } from "node:net";
import { promisify } from "node:util";

const run = promisify(execFile);
// Raw fds, not FileHandles: a FileHandle closes its fd when collected, under the socket.
const open = promisify(openFd);
const close = promisify(closeFd);

/** Creates FIFOs (one process for all of them: Node has no mkfifo). */
export async function mkfifo(...paths: string[]): Promise<void> {
  const wanted = paths.filter(Boolean);
  if (wanted.length > 0) await run("mkfifo", ["-m", "0600", ...wanted]);
}

/**
 * Opens the read side of a FIFO without blocking. Until `release()` is called a
 * placeholder writer keeps the pipe from reporting EOF before the shim has
 * opened its end; after that, EOF means the writer (the process) is done.
 */
export async function openFifoReader(path: string): Promise<{ stream: Socket; release: () => Promise<void> }> {
  const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const placeholder = await open(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const stream = new Socket({ fd: reader, readable: true, writable: false });
  let released = false;
  return {
    stream,
    release: async () => {
      if (released) return;
      released = true;
      await close(placeholder);
    },
  };
}

/** Opens the write side of a FIFO (stdin) without blocking; the shim reads it. */
export async function openFifoWriter(path: string): Promise<Socket> {
  // O_RDWR: opening write-only would fail with ENXIO until the shim reads.
  const fd = await open(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new Socket({ fd, readable: false, writable: true });
}

export async function removeFifo(path: string): Promise<void> {
  await rm(path, { force: true });
}
