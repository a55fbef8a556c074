// The gRPC server: both CRI services on one unix socket, and an orderly shutdown.
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
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

  constructor(path: string, services: ServiceBinding[], log: Logger) {
    this.#path = path;
    this.#log = log;
    for (const { definition, handlers } of services) this.#server.addService(definition, implementAll(definition, handlers));
  }

  async listen(): Promise<void> {
    await prepareSocketPath(this.#path);
    await new Promise<number>((resolve, reject) =>
      this.#server.bindAsync(`unix://${this.#path}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    await restrictSocket(this.#path);
    this.#log.info({ socket: this.#path }, "serving the CRI");
  }

  /** Stops accepting, lets in-flight calls finish for up to `graceMs`, removes the socket. */
  async close(graceMs = 10_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.#server.forceShutdown(); resolve(); }, graceMs);
      this.#server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
    await removeSocket(this.#path);
  }
}
