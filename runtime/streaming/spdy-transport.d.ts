// The part of spdy-transport 3.x that crib uses (the package ships no types).
declare module "spdy-transport" {
  import type { Duplex } from "node:stream";
  import type { EventEmitter } from "node:events";

  namespace spdyTransport {
    type Headers = Record<string, string | string[] | undefined>;

    interface ConnectionOptions {
      protocol: "spdy" | "http2";
      isServer: boolean;
      /** Receive window advertised per stream and for the session. */
      windowSize?: number;
      maxStreams?: number;
      maxChunk?: number | false;
      headerCompression?: boolean;
      acceptPush?: boolean;
      autoSpdy31?: boolean;
    }

    interface RequestOptions {
      method: string;
      path: string;
      host?: string;
      headers?: Record<string, string>;
    }

    /** One SPDY stream; a readable-stream v3 Duplex. */
    interface Stream extends Duplex {
      readonly id: number;
      readonly method: string | undefined;
      readonly path: string | undefined;
      readonly headers: Headers;
      readonly connection: Connection;
      respond(status: number, headers: Record<string, string>, callback?: (err?: Error | null) => void): void;
      /** Sends RST_STREAM with the code (default CANCEL). */
      abort(code?: string, callback?: () => void): void;
    }

    interface Connection extends EventEmitter {
      readonly socket: Duplex;
      start(version: number): void;
      getVersion(): number | null;
      request(options: RequestOptions, callback?: (err: Error | null, stream: Stream) => void): Stream;
      end(callback?: () => void): void;
      destroyStreams(err?: Error): void;
      on(event: "stream", listener: (stream: Stream) => void): this;
      on(event: "error", listener: (err: Error) => void): this;
      on(event: "close", listener: (err?: Error) => void): this;
      on(event: string, listener: (...args: any[]) => void): this;
    }
  }

  const spdyTransport: {
    connection: { create(socket: Duplex, options: spdyTransport.ConnectionOptions): spdyTransport.Connection };
  };
  export = spdyTransport;
}
