// A server-side SPDY/3 session on an upgraded socket, shaped for the peers that
// matter: kubelet, kubectl and crictl use Go's moby/spdystream, which
//  - opens streams with SYN_STREAM frames that carry only its own headers (no
//    `:method`/`:path`, which spdy-transport's parser insists on), and
//  - implements no flow control: it never sends WINDOW_UPDATE and ignores ours.
// So the session accepts bare SYN_STREAMs, ignores the peer's windows and takes
// its backpressure from the TCP socket instead, like spdystream does.
import { Readable, Writable, type Duplex } from "node:stream";
import spdyTransport from "spdy-transport";
import type { Stream as SpdyStream, Connection as SpdyConnection } from "spdy-transport";
import type { Logger } from "pino";

export type { SpdyStream };

interface WindowSide {
  update(size: number, callback?: () => void): void;
  getCurrent(): number;
  getMax(): number;
}
interface ParserInternals {
  onSynHeadFrame(type: number, flags: number, body: unknown, callback: (err: Error | null, frame?: unknown) => void): void;
  parseKVs(buffer: unknown, callback: (err: Error | null, headers?: Record<string, unknown>) => void): void;
  pause(): void;
  resume(): void;
}
interface ConnectionInternals {
  _spdyState: { parser: ParserInternals; framer: { readableLength: number }; window: { send: WindowSide } };
}
interface StreamInternals {
  _spdyState: { window: { send: WindowSide }; aborted: boolean };
}

const SYN_STREAM = 0x01;
/** Window reported to spdy-transport's chunker once peer windows are ignored. */
const UNLIMITED_WINDOW = 1 << 20;
/** Bytes the framer may hold beyond the socket before writers wait. */
const FRAMER_HIGH_WATER = 64 * 1024;
/** Receive window we advertise (spdy-transport peers honour it; spdystream does not care). */
const RECEIVE_WINDOW = 1 << 20;

/** Lets SYN_STREAM frames without `:method`/`:path` through, as spdystream sends them. */
export function acceptBareSynStreams(conn: SpdyConnection): void {
  const parser = (conn as unknown as ConnectionInternals)._spdyState.parser;
  const original = parser.onSynHeadFrame;
  parser.onSynHeadFrame = function (this: ParserInternals, type, flags, body, callback) {
    if (type !== SYN_STREAM) return original.call(this, type, flags, body, callback);
    const parseKVs = this.parseKVs;
    // parseKVs is called synchronously by onSynHeadFrame; its callback runs later.
    this.parseKVs = (buffer, cb) =>
      parseKVs.call(this, buffer, (err, headers) => {
        if (headers !== undefined) {
          headers[":method"] ??= "POST";
          headers[":path"] ??= "/";
        }
        cb(err, headers);
      });
    try {
      original.call(this, type, flags, body, callback);
    } finally {
      delete (this as Partial<ParserInternals>).parseKVs;
    }
  };
}

function ignoreWindow(side: WindowSide): void {
  side.update = (_size, callback) => {
    if (callback !== undefined) process.nextTick(callback);
  };
  side.getCurrent = () => UNLIMITED_WINDOW;
  side.getMax = () => UNLIMITED_WINDOW;
}

/** Sends on this connection without waiting for the peer's WINDOW_UPDATEs. */
export function ignorePeerSessionWindow(conn: SpdyConnection): void {
  ignoreWindow((conn as unknown as ConnectionInternals)._spdyState.window.send);
}

/** Sends on this stream without waiting for the peer's WINDOW_UPDATEs. */
export function ignorePeerStreamWindow(stream: SpdyStream): void {
  ignoreWindow((stream as unknown as StreamInternals)._spdyState.window.send);
}

const isAborted = (stream: SpdyStream): boolean => (stream as unknown as StreamInternals)._spdyState.aborted;

export const headerValue = (stream: SpdyStream, name: string): string | undefined => {
  const value = stream.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
};

export class SpdySession {
  readonly #socket: Duplex;
  readonly #conn: SpdyConnection;
  readonly #log: Logger;
  readonly #streams = new Set<SpdyStream>();
  readonly #blockers = new Set<object>();
  readonly #early: SpdyStream[] = [];
  #onStream: ((stream: SpdyStream) => void) | undefined;
  #drained: Promise<void> | undefined;
  #closed = false;
  readonly closed: Promise<void>;

  constructor(socket: Duplex, log: Logger) {
    this.#socket = socket;
    this.#log = log;
    this.#conn = spdyTransport.connection.create(socket, {
      protocol: "spdy",
      isServer: true,
      windowSize: RECEIVE_WINDOW,
      headerCompression: true,
    });
    acceptBareSynStreams(this.#conn);
    ignorePeerSessionWindow(this.#conn);
    this.#conn.on("error", (err: Error) => this.#log.debug({ err: err.message }, "spdy connection error"));
    this.#conn.on("stream", (stream: SpdyStream) => this.#adopt(stream));
    this.closed = new Promise((resolve) => {
      const done = (): void => {
        this.#closed = true;
        this.#blockers.clear();
        resolve();
      };
      if (socket.destroyed) done();
      else socket.once("close", done);
    });
    this.#conn.start(3);
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Receives every stream the client opens, including any that arrived before this call. */
  onStream(listener: (stream: SpdyStream) => void): void {
    this.#onStream = listener;
    for (const stream of this.#early.splice(0)) listener(stream);
  }

  /** SYN_REPLY: the client may use the stream. */
  accept(stream: SpdyStream): void {
    stream.respond(200, {});
  }

  /** RST_STREAM REFUSED_STREAM. */
  refuse(stream: SpdyStream): void {
    stream.abort("REFUSED_STREAM");
  }

  /** Drops whatever the client sends on a stream the server only writes to. */
  discardInput(stream: SpdyStream): void {
    stream.resume();
  }

  /**
   * The client's bytes on `stream`. Ends on the client's FIN, or on RST. When the
   * reader is full the whole connection stops reading: spdystream peers have no
   * per-stream flow control, so TCP is the only brake.
   */
  reader(stream: SpdyStream): Readable {
    const key = {};
    const out = new Readable({
      read: () => this.#unblock(key),
      destroy: (err, callback) => {
        this.#unblock(key);
        stream.off("data", onData);
        stream.resume();
        callback(err);
      },
    });
    const onData = (chunk: Buffer): void => {
      if (out.destroyed || out.readableEnded) return;
      if (!out.push(chunk)) this.#block(key);
    };
    const onEnd = (): void => {
      if (!out.destroyed) out.push(null);
    };
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("close", onEnd);
    return out;
  }

  /**
   * Writes to the client on `stream`; ending it sends FIN. Waits while the socket
   * is congested. Writes after the stream or connection is gone are dropped: the
   * session's signal tells the writer to stop.
   */
  writer(stream: SpdyStream): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.#closed || isAborted(stream) || stream.writableEnded) {
          callback();
          return;
        }
        stream.write(chunk, () => {
          void this.#writable().then(() => callback());
        });
      },
      final: (callback) => {
        if (!this.#closed && !isAborted(stream) && !stream.writableEnded) stream.end();
        callback();
      },
    });
  }

  /**
   * Ends the session the way spdystream peers expect: FIN on every stream still
   * open for writing, then wait for the client to hang up (it does once it has
   * read everything). Closing TCP first would race the client's frame workers
   * and lose the tail of the output. After `graceMs` the socket is destroyed.
   */
  async finish(graceMs: number): Promise<void> {
    if (this.#closed) return;
    for (const stream of this.#streams) {
      if (!isAborted(stream) && !stream.writableEnded) stream.end();
      stream.resume();
    }
    this.#blockers.clear();
    (this.#conn as unknown as ConnectionInternals)._spdyState.parser.resume();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    this.destroy();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #adopt(stream: SpdyStream): void {
    ignorePeerStreamWindow(stream);
    stream.on("error", (err: Error) => this.#log.debug({ err: err.message, stream: stream.id }, "spdy stream error"));
    this.#streams.add(stream);
    stream.once("close", () => this.#streams.delete(stream));
    if (this.#onStream === undefined) this.#early.push(stream);
    else this.#onStream(stream);
  }

  #block(key: object): void {
    if (this.#closed) return;
    if (this.#blockers.size === 0) (this.#conn as unknown as ConnectionInternals)._spdyState.parser.pause();
    this.#blockers.add(key);
  }

  #unblock(key: object): void {
    if (!this.#blockers.delete(key) || this.#blockers.size > 0) return;
    (this.#conn as unknown as ConnectionInternals)._spdyState.parser.resume();
  }

  #congested(): boolean {
    if (this.#socket.destroyed) return false;
    const framer = (this.#conn as unknown as ConnectionInternals)._spdyState.framer;
    return this.#socket.writableNeedDrain || framer.readableLength > FRAMER_HIGH_WATER;
  }

  /** Resolves once the socket can take more (at once if it can now). */
  #writable(): Promise<void> {
    if (!this.#congested()) return Promise.resolve();
    this.#drained ??= new Promise<void>((resolve) => {
      const socket = this.#socket;
      let immediate: NodeJS.Immediate | undefined;
      const settle = (): void => {
        socket.off("drain", onDrain);
        socket.off("close", settle);
        clearImmediate(immediate);
        this.#drained = undefined;
        resolve();
      };
      // The framer refills the socket on drain; look again once it has.
      const onDrain = (): void => {
        clearImmediate(immediate);
        immediate = setImmediate(() => {
          if (!this.#congested()) settle();
        });
      };
      socket.on("drain", onDrain);
      socket.once("close", settle);
    });
    return this.#drained;
  }
}
