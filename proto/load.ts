// Loads crib's .proto files at run time with the options the types in proto/gen/
// were generated with (proto/loader-options.json), so the objects grpc-js hands
// out are exactly the generated types. Each API is loaded once and cached.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { MessageTypeDefinition, Options, PackageDefinition } from "@grpc/proto-loader";
import type { ProtoGrpcType as CriProtoGrpcType } from "./gen/cri/api.js";
import type { ProtoGrpcType as ContainerdProtoGrpcType } from "./gen/containerd/containerd.js";
import type { Any } from "./gen/containerd/google/protobuf/Any.js";

export type { CriProtoGrpcType, ContainerdProtoGrpcType };

type EventDefinitions = ContainerdProtoGrpcType["containerd"]["events"];
/** containerd's event payloads by the name containerd puts in an Envelope's type_url. */
export type ContainerdEvents = {
  [K in keyof EventDefinitions as `containerd.events.${K & string}`]:
    EventDefinitions[K] extends MessageTypeDefinition<unknown, infer Output> ? Output : never;
};

export interface DecodedAny {
  /** The fully qualified message name, e.g. "containerd.events.TaskExit". */
  type: string;
  value: object;
}

// Source runs from proto/, compiled code from dist/proto/; the .proto files stay in proto/.
const candidates = [new URL("./", import.meta.url), new URL("../../proto/", import.meta.url)].map((url) => fileURLToPath(url));
const found = candidates.find((dir) => existsSync(`${dir}cri/api.proto`));

/** The directory holding crib's .proto sources, with a trailing slash. */
export function protoSourceDir(): string {
  if (found === undefined) throw new Error(`crib's .proto files not found in ${candidates.join(" or ")}`);
  return found;
}

function definitions(entry: string): PackageDefinition {
  const dir = protoSourceDir();
  return loadSync(entry, { ...loaderOptions(dir), includeDirs: [dir] });
}

interface LoaderOptionsFile {
  keepCase: boolean;
  longs: "String" | "Number";
  enums: "String";
  defaults: boolean;
  oneofs: boolean;
  bytes: "Buffer" | "String";
}

// The JSON names constructors; proto-loader wants the constructors themselves.
function loaderOptions(dir: string): Options {
  const file = JSON.parse(readFileSync(`${dir}loader-options.json`, "utf8")) as LoaderOptionsFile;
  return {
    keepCase: file.keepCase,
    longs: file.longs === "String" ? String : Number,
    enums: String,
    defaults: file.defaults,
    oneofs: file.oneofs,
    ...(file.bytes === "String" ? { bytes: String } : {}),
  };
}

let cri: CriProtoGrpcType | undefined;
let criDefs: PackageDefinition | undefined;

/** The CRI's message and service descriptors, as proto-loader read them (for request checks). */
export function criDefinitions(): PackageDefinition {
  criDefs ??= definitions("cri/api.proto");
  return criDefs;
}
let containerd: { definitions: PackageDefinition; grpc: ContainerdProtoGrpcType } | undefined;

export function loadCri(): CriProtoGrpcType {
  cri ??= loadPackageDefinition(criDefinitions()) as unknown as CriProtoGrpcType;
  return cri;
}

function containerdApi(): NonNullable<typeof containerd> {
  if (containerd === undefined) {
    const defs = definitions("containerd.proto");
    containerd = { definitions: defs, grpc: loadPackageDefinition(defs) as unknown as ContainerdProtoGrpcType };
  }
  return containerd;
}

export function loadContainerd(): ContainerdProtoGrpcType {
  return containerdApi().grpc;
}

/**
 * Decodes a google.protobuf.Any holding one of containerd's messages (an event
 * Envelope's payload). containerd writes the bare name as type_url
 * ("containerd.events.TaskExit"); a "type.googleapis.com/" style prefix is accepted too.
 */
export function decodeAny(any: Any): DecodedAny {
  const type = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
  const definition = containerdApi().definitions[type];
  if (definition === undefined || !("format" in definition) || definition.format !== "Protocol Buffer 3 DescriptorProto") {
    throw new Error(`google.protobuf.Any: type_url "${any.type_url}" is not a containerd message crib knows`);
  }
  return { type, value: (definition as MessageTypeDefinition<object, object>).deserialize(any.value) };
}

/** Narrows a decoded Any to the event it carries. */
export function isEvent<T extends keyof ContainerdEvents>(
  decoded: DecodedAny,
  type: T,
): decoded is { type: T; value: ContainerdEvents[T] } {
  return decoded.type === type;
}

/** Encodes one of containerd's messages (e.g. "containerd.runc.v1.Options") as a google.protobuf.Any. */
export function encodeAny(type: string, value: object): { type_url: string; value: Buffer } {
  const definition = containerdApi().definitions[type];
  if (definition === undefined || !("format" in definition)) throw new Error(`${type} is not a containerd message crib knows`);
  return { type_url: type, value: (definition as MessageTypeDefinition<object, object>).serialize(value) };
}

/** A JSON document as an Any, the way containerd carries OCI specs and client extensions. */
export const jsonAny = (typeUrl: string, value: unknown): { type_url: string; value: Buffer } =>
  ({ type_url: typeUrl, value: Buffer.from(JSON.stringify(value)) });
