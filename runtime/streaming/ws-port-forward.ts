// Port forwarding over WebSocket: one connection per requested port, port i on
// channels 2i (data) and 2i+1 (error), each of which first carries the port as
// two little-endian bytes. The session ends when every connection has.
import type WebSocket from "ws";
import type { Logger } from "pino";
import { forwardPort } from "./port-forward.js";
import type { StreamingRuntime } from "./streaming-runtime.js";
import { WsChannels } from "./ws-channels.js";

export interface WsPortForwardOptions {
  protocol: string;
  ports: readonly number[];
  podSandboxId: string;
  runtime: StreamingRuntime;
  halfCloseTimeoutMs: number;
  signal: AbortSignal;
  log: Logger;
}

export async function serveWsPortForward(ws: WebSocket, options: WsPortForwardOptions): Promise<void> {
  const { signal, log } = options;
  const channels = new WsChannels(ws, { base64: options.protocol.includes("base64"), closeSignals: false, log });
  const forwards = options.ports.map((port, i) => {
    const data = 2 * i;
    const error = 2 * i + 1;
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16LE(port);
    void channels.send(data, prefix);
    void channels.send(error, prefix);
    return forwardPort(
      {
        input: channels.reader(data),
        output: channels.writer(data),
        reportError: (message) => void channels.send(error, Buffer.from(message)),
        endErrors: () => undefined,
      },
      { runtime: options.runtime, podSandboxId: options.podSandboxId, port, halfCloseTimeoutMs: options.halfCloseTimeoutMs, signal, log: log.child({ port }) },
    );
  });
  await Promise.all(forwards);
  await channels.close(1000);
}
