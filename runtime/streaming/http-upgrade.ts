// The HTTP part of a streaming request: subprotocol negotiation and answers
// written straight to an upgrade socket (there is no ServerResponse for those).
import { STATUS_CODES, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

export const STREAM_PROTOCOL_HEADER = "X-Stream-Protocol-Version";
export const ACCEPTED_PROTOCOLS_HEADER = "X-Accepted-Stream-Protocol-Versions";

/** Remote command protocols over SPDY, newest first. v5 is v4 here: SPDY streams half-close natively. */
export const SPDY_REMOTE_COMMAND_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"] as const;
export const SPDY_PORT_FORWARD_PROTOCOLS = ["portforward.k8s.io"] as const;
/** Remote command subprotocols over WebSocket; "" is a client that names none (binary, v1 semantics). */
export const WS_REMOTE_COMMAND_PROTOCOLS = [
  "v5.channel.k8s.io",
  "v4.channel.k8s.io",
  "v4.base64.channel.k8s.io",
  "v3.channel.k8s.io",
  "v2.channel.k8s.io",
  "channel.k8s.io",
  "base64.channel.k8s.io",
] as const;
/** SPDY port forward tunnelled in WebSocket binary messages (client-go's SPDYOverWebsocketDialer: kubectl ≥ 1.31, crictl --transport websocket). */
export const SPDY_OVER_WEBSOCKET_PORT_FORWARD = "SPDY/3.1+portforward.k8s.io";
export const WS_PORT_FORWARD_PROTOCOLS = [SPDY_OVER_WEBSOCKET_PORT_FORWARD, "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "portforward.k8s.io"] as const;

/** All values of a header, whether repeated or comma-separated. */
export function headerValues(req: IncomingMessage, name: string): string[] {
  const raw = req.headersDistinct[name.toLowerCase()] ?? [];
  return raw.flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v !== "");
}

/** The first protocol the client offers that the server speaks (the client's preference wins). */
export function negotiate(offered: readonly string[], supported: readonly string[]): string | undefined {
  return offered.find((p) => supported.includes(p));
}

export function isSpdyUpgrade(req: IncomingMessage): boolean {
  const connection = (req.headers.connection ?? "").toLowerCase();
  const upgrade = (req.headers.upgrade ?? "").toLowerCase();
  return connection.includes("upgrade") && upgrade.includes("spdy/3.1");
}

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? "").toLowerCase() === "websocket";
}

/** Answers 101 for a SPDY/3.1 upgrade with the negotiated protocol. */
export function switchToSpdy(socket: Duplex, protocol: string): void {
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "Connection: Upgrade\r\n" +
      "Upgrade: SPDY/3.1\r\n" +
      `${STREAM_PROTOCOL_HEADER}: ${protocol}\r\n` +
      "\r\n",
  );
}

/** Writes a plain-text HTTP error on a socket that will not be upgraded, then half-closes it. */
export function refuseUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string | readonly string[]> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${message}\n`;
  const extra = Object.entries(headers)
    .flatMap(([name, value]) => (typeof value === "string" ? [value] : value).map((v) => `${name}: ${v}\r\n`))
    .join("");
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n` +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      "X-Content-Type-Options: nosniff\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      "Connection: close\r\n" +
      extra +
      "\r\n" +
      body,
  );
}
