// Kubernetes' channel framing over one WebSocket: every message starts with its
// channel number (a byte; an ASCII digit for the base64 protocols, which carry
// base64 text). v5 adds a close signal: channel 255 carrying the number of the
// channel the peer has finished writing.
import { Readable, Writable } from "node:stream";
import WebSocket from "ws";
import type { Logger } from "pino";

export const CLOSE_SIGNAL_CHANNEL = 255;
/** Queued bytes beyond which writers wait for the socket. */
const SEND_HIGH_WATER = 1 << 20;

export interface WsChannelOptions {
  /** base64.channel.k8s.io and v4.base64.channel.k8s.io */
  base64: boolean;
  /** v5.channel.k8s.io: honour [255, channel] as that channel's end. */
  closeSignals: boolean;
  log: Logger;
}

export class WsChannels {
  readonly #ws: WebSocket;
  readonly #options: WsChannelOptions;
  readonly #readers = new Map<number, Readable>();
  readonly #blocked = new Set<number>();
  readonly closed: Promise<void>;

  constructor(ws: WebSocket, options: WsChannelOptions) {
    this.#ws = ws;
    this.#options = options;
    this.closed = new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) resolve();
      else ws.once("close", () => resolve());
    });
    ws.on("message", (data, isBinary) => this.#receive(toBuffer(data), isBinary));
    ws.on("error", (err) => options.log.debug({ err: err.message }, "websocket error"));
    ws.once("close", () => {
      for (const reader of this.#readers.values()) if (!reader.destroyed) reader.push(null);
      this.#blocked.clear();
    });
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  /** The client's bytes on `channel`; ends on a v5 close signal or when the socket closes. */
  reader(channel: number): Readable {
    const reader = new Readable({
      read: () => this.#unblock(channel),
      destroy: (err, callback) => {
        this.#unblock(channel);
        this.#readers.delete(channel);
        callback(err);
      },
    });
    this.#readers.set(channel, reader);
    if (!this.isOpen) reader.push(null);
    return reader;
  }

  /** Writes to the client on `channel`; writes after the socket closed are dropped. */
  writer(channel: number): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        void this.send(channel, chunk).then(() => callback());
      },
    });
  }

  /** Sends one message on `channel`; resolves when the socket can take more. */
  send(channel: number, data: Buffer): Promise<void> {
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    const message = this.#options.base64 ? String.fromCharCode(48 + channel) + data.toString("base64") : Buffer.concat([Buffer.of(channel), data]);
    if (ws.bufferedAmount < SEND_HIGH_WATER) {
      ws.send(message, { binary: !this.#options.base64 });
      return Promise.resolve();
    }
    return new Promise((resolve) => ws.send(message, { binary: !this.#options.base64 }, () => resolve()));
  }

  /** Closes normally after everything queued is sent; resolves once the socket is closed. */
  async close(code = 1000, reason = ""): Promise<void> {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.close(code, reason);
    await this.closed;
  }

  terminate(): void {
    this.#ws.terminate();
  }

  #receive(data: Buffer, isBinary: boolean): void {
    let channel: number;
    let payload: Buffer;
    if (this.#options.base64) {
      if (isBinary || data.length === 0) return;
      const text = data.toString("latin1");
      channel = text.charCodeAt(0) - 48;
      payload = Buffer.from(text.slice(1), "base64");
    } else {
      if (data.length === 0) return;
      channel = data[0] as number;
      payload = data.subarray(1);
    }
    if (this.#options.closeSignals && channel === CLOSE_SIGNAL_CHANNEL) {
      const target = payload[0];
      const reader = target === undefined ? undefined : this.#readers.get(target);
      if (reader !== undefined && !reader.destroyed && !reader.readableEnded) reader.push(null);
      return;
    }
    const reader = this.#readers.get(channel);
    if (reader === undefined || reader.destroyed || reader.readableEnded) {
      if (payload.length > 0) this.#options.log.debug({ channel, bytes: payload.length }, "dropping data on a channel the client may not write");
      return;
    }
    if (payload.length > 0 && !reader.push(payload)) this.#block(channel);
  }

  #block(channel: number): void {
    if (this.#blocked.size === 0) this.#ws.pause();
    this.#blocked.add(channel);
  }

  #unblock(channel: number): void {
    if (!this.#blocked.delete(channel) || this.#blocked.size > 0) return;
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.resume();
  }
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
