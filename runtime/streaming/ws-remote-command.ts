// Exec and attach over WebSocket: channel 0 stdin, 1 stdout, 2 stderr, 3 error,
// 4 resize, all on one connection that is open as soon as it is upgraded.
import type WebSocket from "ws";
import type { Logger } from "pino";
import { encodeStatus, readTerminalSizes, type RemoteCommandTransport } from "./remote-command.js";
import { remoteCommandVersion } from "./spdy-remote-command.js";
import { WsChannels } from "./ws-channels.js";

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

export interface WsRemoteCommandOptions {
  /** The negotiated subprotocol; "" when the client named none. */
  protocol: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  log: Logger;
}

export function wsRemoteCommand(ws: WebSocket, options: WsRemoteCommandOptions): RemoteCommandTransport {
  const version = remoteCommandVersion(options.protocol);
  const channels = new WsChannels(ws, { base64: options.protocol.includes("base64"), closeSignals: version >= 5, log: options.log });
  const transport: RemoteCommandTransport = {
    ...(options.stdin && { stdin: channels.reader(STDIN) }),
    ...(options.stdout && { stdout: channels.writer(STDOUT) }),
    ...(options.stderr && { stderr: channels.writer(STDERR) }),
    ...(options.tty && { resize: readTerminalSizes(channels.reader(RESIZE), options.log) }),
    writeStatus: async (status) => {
      const bytes = encodeStatus(status, version >= 4);
      if (bytes !== undefined) await channels.send(ERROR, bytes);
    },
    finish: () => channels.close(1000),
  };
  // As kubelet does: an empty message on the lowest channel the client reads tells it the session is up.
  void channels.send(options.stdout ? STDOUT : options.stderr ? STDERR : ERROR, Buffer.alloc(0));
  return transport;
}
