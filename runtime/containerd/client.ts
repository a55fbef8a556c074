// A typed client of containerd's gRPC API. Every unary rpc of every service is
// available as `client.<service>.<Rpc>(request, signal?)` returning a promise;
// streaming rpcs are reached through `client.raw.<service>`. All calls carry
// crib's namespace and map failures to ContainerdError (keeping the gRPC code).
import { Metadata, credentials, type CallOptions, type Client, type ClientUnaryCall, type requestCallback } from "@grpc/grpc-js";
import { loadContainerd } from "../../proto/load.js";
import { fromGrpc } from "./errors.js";
import { countCall } from "../call-trace.js";

type Unary<F> = F extends (argument: infer Req, callback: requestCallback<infer Res>) => ClientUnaryCall
  ? (request: Req, signal?: AbortSignal) => Promise<Res>
  : never;

/** The unary rpcs of a generated client, promisified (the capitalised names only). */
export type Api<C> = {
  [K in keyof C as K extends string ? (K extends Capitalize<K> ? (Unary<C[K]> extends never ? never : K) : never) : never]: Unary<C[K]>;
};

const proto = () => loadContainerd().containerd;
type Services = ReturnType<typeof proto>["services"];
type ClientOf<T> = T extends new (...args: never[]) => infer C ? C : never;

export type ContainersClient = ClientOf<Services["containers"]["v1"]["Containers"]>;
export type ContentClient = ClientOf<Services["content"]["v1"]["Content"]>;
export type DiffClient = ClientOf<Services["diff"]["v1"]["Diff"]>;
export type EventsClient = ClientOf<Services["events"]["v1"]["Events"]>;
export type ImagesClient = ClientOf<Services["images"]["v1"]["Images"]>;
export type IntrospectionClient = ClientOf<Services["introspection"]["v1"]["Introspection"]>;
export type LeasesClient = ClientOf<Services["leases"]["v1"]["Leases"]>;
export type NamespacesClient = ClientOf<Services["namespaces"]["v1"]["Namespaces"]>;
export type SnapshotsClient = ClientOf<Services["snapshots"]["v1"]["Snapshots"]>;
export type TasksClient = ClientOf<Services["tasks"]["v1"]["Tasks"]>;
export type VersionClient = ClientOf<Services["version"]["v1"]["Version"]>;

function promisify<C extends Client>(client: C, service: string, metadata: () => Metadata): Api<C> {
  const api: Record<string, unknown> = {};
  const definition = (client.constructor as unknown as { service: Record<string, { requestStream: boolean; responseStream: boolean }> }).service;
  for (const [name, def] of Object.entries(definition)) {
    if (def.requestStream || def.responseStream) continue;
    const method = (client as unknown as Record<string, (req: unknown, md: Metadata, opts: CallOptions, cb: requestCallback<unknown>) => ClientUnaryCall>)[name]!.bind(client);
    api[name] = (request: unknown, signal?: AbortSignal) =>
      new Promise((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const counted = countCall(`containerd ${service}.${name}`);
        const call = method(request, metadata(), {}, (err, res) => {
          counted();
          signal?.removeEventListener("abort", cancel);
          if (err) reject(signal?.aborted ? signal.reason : fromGrpc(`${service}.${name}`, err));
          else resolve(res);
        });
        const cancel = () => call.cancel();
        signal?.addEventListener("abort", cancel, { once: true });
      });
  }
  return api as Api<C>;
}

const LEASE_HEADER = "containerd-lease";

export interface Leased {
  content: Api<ContentClient>;
  snapshots: Api<SnapshotsClient>;
  diff: Api<DiffClient>;
  images: Api<ImagesClient>;
  metadata(): Metadata;
}

export class Containerd {
  readonly address: string;
  readonly namespace: string;
  readonly raw: {
    containers: ContainersClient; content: ContentClient; diff: DiffClient; events: EventsClient; images: ImagesClient;
    introspection: IntrospectionClient; leases: LeasesClient; namespaces: NamespacesClient; snapshots: SnapshotsClient;
    tasks: TasksClient; version: VersionClient;
  };
  readonly containers: Api<ContainersClient>;
  readonly content: Api<ContentClient>;
  readonly diff: Api<DiffClient>;
  readonly events: Api<EventsClient>;
  readonly images: Api<ImagesClient>;
  readonly introspection: Api<IntrospectionClient>;
  readonly leases: Api<LeasesClient>;
  readonly namespaces: Api<NamespacesClient>;
  readonly snapshots: Api<SnapshotsClient>;
  readonly tasks: Api<TasksClient>;
  readonly version: Api<VersionClient>;

  constructor(address: string, namespace: string) {
    this.address = address;
    this.namespace = namespace;
    const s = proto().services;
    const target = `unix://${address}`;
    const options = {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 2000,
      // per-call tracing for a channelz service nobody queries
      "grpc.enable_channelz": 0,
    };
    const version = new s.version.v1.Version(target, credentials.createInsecure(), options);
    const shared = { ...options, channelOverride: version.getChannel() };
    const make = <T>(ctor: new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options: object) => T): T =>
      new ctor(target, credentials.createInsecure(), shared);
    this.raw = {
      version,
      containers: make(s.containers.v1.Containers),
      content: make(s.content.v1.Content),
      diff: make(s.diff.v1.Diff),
      events: make(s.events.v1.Events),
      images: make(s.images.v1.Images),
      introspection: make(s.introspection.v1.Introspection),
      leases: make(s.leases.v1.Leases),
      namespaces: make(s.namespaces.v1.Namespaces),
      snapshots: make(s.snapshots.v1.Snapshots),
      tasks: make(s.tasks.v1.Tasks),
    };
    const md = () => this.metadata();
    this.containers = promisify(this.raw.containers, "containers", md);
    this.content = promisify(this.raw.content, "content", md);
    this.diff = promisify(this.raw.diff, "diff", md);
    this.events = promisify(this.raw.events, "events", md);
    this.images = promisify(this.raw.images, "images", md);
    this.introspection = promisify(this.raw.introspection, "introspection", md);
    this.leases = promisify(this.raw.leases, "leases", md);
    this.namespaces = promisify(this.raw.namespaces, "namespaces", md);
    this.snapshots = promisify(this.raw.snapshots, "snapshots", md);
    this.tasks = promisify(this.raw.tasks, "tasks", md);
    this.version = promisify(this.raw.version, "version", md);
  }

  /** Call metadata carrying crib's namespace; pass it to the raw streaming clients. */
  metadata(): Metadata {
    const md = new Metadata();
    md.set("containerd-namespace", this.namespace);
    return md;
  }

  /**
   * The content, snapshots, diff and images apis with every call made under
   * lease `id` (the `containerd-lease` header): what they create is kept from
   * garbage collection until the lease is deleted. `metadata()` is for raw streams.
   */
  leased(id: string): Leased {
    const md = (): Metadata => {
      const m = this.metadata();
      m.set(LEASE_HEADER, id);
      return m;
    };
    return {
      content: promisify(this.raw.content, "content", md),
      snapshots: promisify(this.raw.snapshots, "snapshots", md),
      diff: promisify(this.raw.diff, "diff", md),
      images: promisify(this.raw.images, "images", md),
      metadata: md,
    };
  }

  /** True when containerd answers a Version call within the signal's time. */
  async ping(signal: AbortSignal): Promise<boolean> {
    try {
      await this.version.Version({}, signal);
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    for (const client of Object.values(this.raw)) client.close();
  }
}
