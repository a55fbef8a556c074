// The streaming sessions proper: SPDY/3.1 and WebSocket upgrades for exec,
// attach and port-forward. server.ts loads this module on the first upgrade
// with a valid token, so a daemon that never streams does not keep ws,
// spdy-transport and the protocol code in memory (~2.5 MB of heap).
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import { createWebSocketStream, WebSocketServer, type ServerOptions as WsServerOptions } from "ws";
import {
  ACCEPTED_PROTOCOLS_HEADER,
  headerValues,
  negotiate,
  SPDY_OVER_WEBSOCKET_PORT_FORWARD,
  SPDY_PORT_FORWARD_PROTOCOLS,
  SPDY_REMOTE_COMMAND_PROTOCOLS,
  STREAM_PROTOCOL_HEADER,
  switchToSpdy,
  WS_PORT_FORWARD_PROTOCOLS,
  WS_REMOTE_COMMAND_PROTOCOLS,
} from "./http-upgrade.js";
import { serveRemoteCommand } from "./remote-command.js";
import { SpdySession } from "./spdy.js";
import { serveSpdyPortForward } from "./spdy-port-forward.js";
import { acceptSpdyRemoteCommand } from "./spdy-remote-command.js";
import type { PortForwardRequest, StreamingRuntime } from "./streaming-runtime.js";
import type { StreamRequest } from "./token-cache.js";
import { serveWsPortForward } from "./ws-port-forward.js";
import { wsRemoteCommand } from "./ws-remote-command.js";

const MAX_WS_MESSAGE = 16 * 1024 * 1024;

/** One session as the server tracks it: its signal ends with the connection. */
export interface SessionHandle {
  readonly signal: AbortSignal;
  readonly log: Logger;
  run(serve: () => Promise<void>): void;
}

export interface UpgradeContext {
  runtime: StreamingRuntime;
  settings: { streamCreationTimeoutMs: number; closeGraceMs: number; portForwardHalfCloseTimeoutMs: number };
  open(socket: Socket, request: StreamRequest, transport: string, protocol: string): SessionHandle;
  refuse(socket: Socket, status: number, message: string, headers?: Record<string, string | readonly string[]>): void;
}

export class Upgrades {
  readonly #ctx: UpgradeContext;
  readonly #wss: WebSocketServer;
  readonly #wsProtocols = new WeakMap<IncomingMessage, string>();

  constructor(ctx: UpgradeContext) {
    this.#ctx = ctx;
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: MAX_WS_MESSAGE,
      closeTimeout: ctx.settings.closeGraceMs,
    } as WsServerOptions);
    // Subprotocols are negotiated here, not by ws, whose RFC 6455 token check
    // rejects client-go's "SPDY/3.1+portforward.k8s.io".
    this.#wss.on("headers", (headers: string[], req: IncomingMessage) => {
      const protocol = this.#wsProtocols.get(req);
      if (protocol) headers.push(`Sec-WebSocket-Protocol: ${protocol}`);
    });
  }

  close(): void {
    this.#wss.close();
  }

  spdy(req: IncomingMessage, socket: Socket, head: Buffer, request: StreamRequest): void {
    const ctx = this.#ctx;
    const supported = request.kind === "portforward" ? SPDY_PORT_FORWARD_PROTOCOLS : SPDY_REMOTE_COMMAND_PROTOCOLS;
    const offered = headerValues(req, STREAM_PROTOCOL_HEADER);
    if (offered.length === 0) return ctx.refuse(socket, 400, `unable to upgrade: ${STREAM_PROTOCOL_HEADER} is required`);
    const protocol = negotiate(offered, supported);
    if (protocol === undefined) {
      return ctx.refuse(socket, 403, `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(" ")}], server accepts [${supported.join(" ")}]`, {
        [ACCEPTED_PROTOCOLS_HEADER]: supported,
      });
    }
    switchToSpdy(socket, protocol);
    if (head.length > 0) socket.unshift(head);
    const session = ctx.open(socket, request, "spdy", protocol);
    const spdy = new SpdySession(socket, session.log);
    const settings = ctx.settings;
    session.run(async () => {
      if (request.kind === "portforward") return this.#spdyPortForward(spdy, request.req, session);
      const transport = await acceptSpdyRemoteCommand(spdy, {
        protocol,
        stdin: request.req.stdin,
        stdout: request.req.stdout,
        stderr: request.req.stderr,
        tty: request.req.tty,
        streamCreationTimeoutMs: settings.streamCreationTimeoutMs,
        closeGraceMs: settings.closeGraceMs,
        signal: session.signal,
        log: session.log,
      });
      await serveRemoteCommand(request, transport, ctx.runtime, session);
    });
  }

  webSocket(req: IncomingMessage, socket: Socket, head: Buffer, request: StreamRequest): void {
    const ctx = this.#ctx;
    const supported = request.kind === "portforward" ? WS_PORT_FORWARD_PROTOCOLS : WS_REMOTE_COMMAND_PROTOCOLS;
    const offered = headerValues(req, "Sec-WebSocket-Protocol");
    const protocol = offered.length === 0 ? "" : negotiate(offered, supported);
    if (protocol === undefined) {
      return ctx.refuse(socket, 400, `unable to upgrade: requested protocol(s) are not supported: [${offered.join(" ")}]; supports [${supported.join(" ")}]`);
    }
    this.#wsProtocols.set(req, protocol);
    delete req.headers["sec-websocket-protocol"];
    if (request.kind === "portforward" && protocol === SPDY_OVER_WEBSOCKET_PORT_FORWARD) {
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        const session = ctx.open(socket, request, "websocket", protocol);
        const spdy = new SpdySession(createWebSocketStream(ws), session.log);
        session.run(() => this.#spdyPortForward(spdy, request.req, session));
      });
      return;
    }
    let ports: number[] = [];
    if (request.kind === "portforward") {
      const parsed = request.req.ports.length > 0 ? request.req.ports : portsFromQuery(req.url);
      if (typeof parsed === "string") return ctx.refuse(socket, 400, parsed);
      ports = parsed;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const session = ctx.open(socket, request, "websocket", protocol || "channel.k8s.io");
      const settings = ctx.settings;
      session.run(async () => {
        if (request.kind === "portforward") {
          await serveWsPortForward(ws, {
            protocol,
            ports,
            podSandboxId: request.req.podSandboxId,
            runtime: ctx.runtime,
            halfCloseTimeoutMs: settings.portForwardHalfCloseTimeoutMs,
            signal: session.signal,
            log: session.log,
          });
          return;
        }
        const transport = wsRemoteCommand(ws, { protocol, stdin: request.req.stdin, stdout: request.req.stdout, stderr: request.req.stderr, tty: request.req.tty, log: session.log });
        await serveRemoteCommand(request, transport, ctx.runtime, session);
      });
    });
  }

  #spdyPortForward(spdy: SpdySession, req: PortForwardRequest, session: SessionHandle): Promise<void> {
    return serveSpdyPortForward(spdy, {
      podSandboxId: req.podSandboxId,
      runtime: this.#ctx.runtime,
      streamCreationTimeoutMs: this.#ctx.settings.streamCreationTimeoutMs,
      halfCloseTimeoutMs: this.#ctx.settings.portForwardHalfCloseTimeoutMs,
      signal: session.signal,
      log: session.log,
    });
  }
}

/** Ports from `?port=80&port=443` or `?port=80,443`, or a message saying what is wrong. */
function portsFromQuery(url: string | undefined): number[] | string {
  const values = new URL(url ?? "/", "http://localhost").searchParams.getAll("port");
  if (values.length === 0) return `query parameter "port" is required`;
  const ports: number[] = [];
  for (const value of values.flatMap((v) => v.split(","))) {
    const port = Number(value);
    if (!/^\d+$/.test(value) || port < 1 || port > 65535) return `unable to parse "${value}" as a port: it must be an integer between 1 and 65535`;
    ports.push(port);
  }
  return ports;
}

