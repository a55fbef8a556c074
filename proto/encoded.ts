// Replies sent as bytes encoded before. A List reply is the concatenation of
// its items' encodings (a repeated field is the field repeated), and an item
// is the same bytes until it changes, so crib keeps them and sends them as
// they are instead of converting and encoding hundreds of objects per call.
// A service definition from passingEncoded() sends an Encoded reply's bytes
// and serializes any other reply as before.
import type { ServiceDefinition } from "@grpc/grpc-js";

export class Encoded<T> {
  /** the message type the bytes encode (for the compiler only) */
  declare readonly of?: T;
  constructor(readonly bytes: Buffer) {}
}

/** The service with each response serializer passing Encoded bytes through. */
export function passingEncoded<S extends ServiceDefinition>(service: S): S {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(service)) {
    const serialize = def.responseSerialize;
    out[name] = { ...def, responseSerialize: (value: unknown): Buffer => (value instanceof Encoded ? value.bytes : serialize(value)) };
  }
  return out as S;
}

const varintLength = (n: number): number => {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
};

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/** A message made of length-delimited fields (embedded messages, strings, bytes), each [field number, encoded value]. */
export function lengthDelimited<T>(fields: ReadonlyArray<readonly [number, Buffer]>): Encoded<T> {
  let size = 0;
  for (const [number, value] of fields) size += varintLength(number * 8 + 2) + varintLength(value.length) + value.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [number, value] of fields) {
    at = writeVarint(out, at, number * 8 + 2);
    at = writeVarint(out, at, value.length);
    at += value.copy(out, at);
  }
  return new Encoded<T>(out);
}

interface Codec<T> {
  encode(value: T): Buffer;
}

/**
 * One message per item, kept with the item (a WeakMap) and encoded again only
 * when `version(item)` differs, element by element, from the last encoding's:
 * the version lists what the message shows of the item that can change in place.
 */
export class EncodedItems<Item extends object, Message> {
  readonly #kept = new WeakMap<Item, { version: readonly unknown[]; bytes: Buffer }>();

  constructor(
    readonly codec: Codec<Message>,
    readonly toMessage: (item: Item) => Message,
    readonly version: (item: Item) => readonly unknown[],
  ) {}

  bytes(item: Item): Buffer {
    const version = this.version(item);
    const kept = this.#kept.get(item);
    if (kept && kept.version.length === version.length && kept.version.every((v, i) => v === version[i])) return kept.bytes;
    const bytes = this.codec.encode(this.toMessage(item));
    this.#kept.set(item, { version, bytes });
    return bytes;
  }
}

/** A reply of one repeated message field (List*): the items' encodings, each as that field. */
export const repeated = <T>(field: number, items: readonly Buffer[]): Encoded<T> => lengthDelimited(items.map((b) => [field, b] as const));
