// The gRPC server: both CRI services on one unix socket, and an orderly shutdown.
// crib owns the listener and hands each connection to grpc-js itself
// (h2-authority.ts), so a client that sends the socket path as `:authority`
// (grpc-go as kubelet and crictl ≤ 1.26 dial) is served like any other.
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { Logger } from "pino";
import { serveConnection } from "./h2-authority.js";
import { implementAll } from "./rpc.js";
import { prepareSocketPath, removeSocket, restrictSocket } from "./socket.js";

export interface ServiceBinding {
  definition: ServiceDefinition;
  handlers: UntypedServiceImplementation;
}

export class CriServer {
  // channelz (grpc-js's per-call tracing, for a debugging service crib does not serve) costs ~10% of a small call's CPU
  readonly #server = new Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024, "grpc.max_send_message_length": 16 * 1024 * 1024, "grpc.enable_channelz": 0 });
  readonly #path: string;
  readonly #log: Logger;
  readonly #injector = this.#server.createConnectionInjector(ServerCredentials.createInsecure());
  readonly #listener: NetServer = createServer((socket) => this.#accept(socket));
  readonly #undecided = new Map<Socket, () => void>();

  constructor(path: string, services: ServiceBinding[], log: Logger) {
    this.#path = path;
    this.#log = log;
    for (const { definition, handlers } of services) this.#server.addService(definition, implementAll(definition, handlers));
  }

  async listen(): Promise<void> {
    await prepareSocketPath(this.#path);
    await new Promise<void>((resolve, reject) => {
      this.#listener.once("error", reject);
      this.#listener.listen(this.#path, () => { this.#listener.off("error", reject); resolve(); });
    });
    this.#listener.on("error", (err) => this.#log.error({ err }, "CRI socket listener failed"));
    await restrictSocket(this.#path);
    this.#log.info({ socket: this.#path }, "serving the CRI");
  }

  #accept(socket: Socket): void {
    socket.on("error", (err) => this.#log.debug({ err }, "CRI client connection failed"));
    const end = serveConnection(socket, (connection) => {
      this.#undecided.delete(socket);
      this.#injector.injectConnection(connection);
    });
    this.#undecided.set(socket, end);
    socket.once("close", () => this.#undecided.delete(socket));
  }

  /** Stops accepting, lets in-flight calls finish for up to `graceMs`, removes the socket. */
  async close(graceMs = 10_000): Promise<void> {
    this.#listener.close();
    for (const end of this.#undecided.values()) end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.#server.forceShutdown(); resolve(); }, graceMs);
      this.#server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
    await removeSocket(this.#path);
  }
}
