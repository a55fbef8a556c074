// Finds the `:authority` (and `host`) values nghttp2 would refuse in an HPACK
// header block, and gives a replacement of the same decoded length for each.
// Keeping the length keeps both peers' dynamic tables the same size, so only the
// table's names and sizes are mirrored here, never its values.
import { huffmanDecode, huffmanEncode } from "./hpack-huffman.js";

// RFC 7541 Appendix A, index 1–61.
const STATIC_NAMES = [
  ":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme", ":status", ":status", ":status", ":status",
  ":status", ":status", ":status", "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
  "access-control-allow-origin", "age", "allow", "authorization", "cache-control", "content-disposition", "content-encoding",
  "content-language", "content-length", "content-location", "content-range", "content-type", "cookie", "date", "etag",
  "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
  "last-modified", "link", "location", "max-forwards", "proxy-authenticate", "proxy-authorization", "range", "referer",
  "refresh", "retry-after", "server", "set-cookie", "strict-transport-security", "transfer-encoding", "user-agent", "vary",
  "via", "www-authenticate",
];
const STATIC_COUNT = STATIC_NAMES.length;
const ENTRY_OVERHEAD = 32;
/** SETTINGS_HEADER_TABLE_SIZE's initial value; Node's http2 server advertises no other. */
export const DEFAULT_TABLE_SIZE = 4096;

const isAuthorityName = (name: string): boolean => name === ":authority" || name === "host";

// What nghttp2_check_authority accepts (RFC 3986 reg-name, IP literal, port, '@').
const VALID = new Uint8Array(256);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@[]%") VALID[c.charCodeAt(0)] = 1;
/** Same Huffman length as '/', so a path's usual rewrite does not change the block's length. */
const REPLACEMENT = "_".charCodeAt(0);

const EMPTY_REPLACEMENT = "localhost";

export class HpackError extends Error {}

/** A byte range of the block and what replaces it. */
export interface Rewrite {
  start: number;
  end: number;
  bytes: Buffer;
}

interface Entry {
  nameLength: number;
  size: number;
  authority: boolean;
}

export class AuthorityScanner {
  // Newest last; HPACK index 62 is the last element.
  readonly #entries: Entry[] = [];
  #size = 0;
  #capacity = DEFAULT_TABLE_SIZE;

  /** The table as the peer's encoder sees it: entry count and size in octets (for tests). */
  get table(): { entries: number; size: number; capacity: number } {
    return { entries: this.#entries.length, size: this.#size, capacity: this.#capacity };
  }

  /**
   * Walks one complete header block, updating the mirrored table. Returns the
   * rewrites it needs (usually none), whether it names an authority (`:authority`
   * or `host`), and where its leading table-size updates end.
   */
  scan(block: Uint8Array): { rewrites: Rewrite[]; authority: boolean; fieldsStart: number } {
    const rewrites: Rewrite[] = [];
    let authority = false;
    let fieldsStart = -1;
    let pos = 0;
    const integer = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[pos++]! & mask;
      if (value < mask) return value;
      for (let shift = 0; ; shift += 7) {
        if (pos >= block.length) throw new HpackError("truncated integer");
        if (shift > 28) throw new HpackError("integer too large");
        const b = block[pos++]!;
        value += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return value;
      }
    };
    const string = (): { start: number; end: number; huffman: boolean; dataStart: number } => {
      if (pos >= block.length) throw new HpackError("truncated string");
      const start = pos;
      const huffman = (block[pos]! & 0x80) !== 0;
      const length = integer(7);
      const dataStart = pos;
      pos += length;
      if (pos > block.length) throw new HpackError("truncated string");
      return { start, end: pos, huffman, dataStart };
    };
    const decoded = (s: { huffman: boolean; dataStart: number; end: number }): Buffer => {
      const raw = block.subarray(s.dataStart, s.end);
      return s.huffman ? huffmanDecode(raw) : Buffer.from(raw.buffer, raw.byteOffset, raw.length);
    };
    const named = (index: number): { nameLength: number; authority: boolean } => {
      if (index === 0) {
        const name = decoded(string());
        return { nameLength: name.length, authority: name.length <= 10 && isAuthorityName(name.toString("latin1")) };
      }
      return this.#lookup(index);
    };

    while (pos < block.length) {
      const b = block[pos]!;
      if (fieldsStart < 0 && (b & 0xe0) !== 0x20) fieldsStart = pos;
      if (b & 0x80) {
        // indexed field: its value is in the table already, and was rewritten on the way in
        if (this.#lookup(integer(7)).authority) authority = true;
      } else if (b & 0x40) {
        const name = named(integer(6));
        if (name.authority) authority = true;
        const value = string();
        const valueLength = this.#value(value, name.authority, true, decoded, rewrites);
        this.#add({ nameLength: name.nameLength, size: name.nameLength + valueLength + ENTRY_OVERHEAD, authority: name.authority });
      } else if (b & 0x20) {
        this.#resize(integer(5));
      } else {
        // literal without indexing (0000) or never indexed (0001): the table is untouched
        const name = named(integer(4));
        const value = string();
        if (name.authority) {
          authority = true;
          this.#value(value, true, false, decoded, rewrites);
        }
      }
    }
    return { rewrites, authority, fieldsStart: fieldsStart < 0 ? block.length : fieldsStart };
  }

  // Returns the decoded length of a value; records a rewrite when it is an authority nghttp2 would refuse.
  // An empty one is refused too; it is replaced only where no table entry depends on its length.
  #value(
    s: { start: number; end: number; huffman: boolean; dataStart: number },
    authority: boolean,
    indexed: boolean,
    decoded: (s: { huffman: boolean; dataStart: number; end: number }) => Buffer,
    rewrites: Rewrite[],
  ): number {
    if (!s.huffman && !authority) return s.end - s.dataStart;
    const value = decoded(s);
    if (authority && value.length === 0 && !indexed) {
      rewrites.push({ start: s.start, end: s.end, bytes: encodeString(Buffer.from(EMPTY_REPLACEMENT), s.huffman) });
    } else if (authority && !value.every((c) => VALID[c] === 1)) {
      const fixed = Buffer.from(value.map((c) => (VALID[c] === 1 ? c : REPLACEMENT)));
      rewrites.push({ start: s.start, end: s.end, bytes: encodeString(fixed, s.huffman) });
    }
    return value.length;
  }

  #lookup(index: number): Entry {
    if (index >= 1 && index <= STATIC_COUNT) {
      const name = STATIC_NAMES[index - 1]!;
      return { nameLength: name.length, size: 0, authority: isAuthorityName(name) };
    }
    const entry = this.#entries[this.#entries.length - 1 - (index - STATIC_COUNT - 1)];
    if (index <= STATIC_COUNT || !entry) throw new HpackError(`index ${index} is not in the table`);
    return entry;
  }

  #add(entry: Entry): void {
    if (entry.size > this.#capacity) {
      this.#entries.length = 0;
      this.#size = 0;
      return;
    }
    this.#evictTo(this.#capacity - entry.size);
    this.#entries.push(entry);
    this.#size += entry.size;
  }

  #resize(capacity: number): void {
    if (capacity > DEFAULT_TABLE_SIZE) throw new HpackError(`table size ${capacity} exceeds ${DEFAULT_TABLE_SIZE}`);
    this.#capacity = capacity;
    this.#evictTo(capacity);
  }

  #evictTo(limit: number): void {
    let drop = 0;
    while (this.#size > limit) this.#size -= this.#entries[drop++]!.size;
    if (drop > 0) this.#entries.splice(0, drop);
  }
}

/** An HPACK string literal: the length with its H bit, then the octets. */
export function encodeString(value: Uint8Array, huffman: boolean): Buffer {
  const data = huffman ? huffmanEncode(value) : Buffer.from(value);
  const prefix = encodeInteger(data.length, 7, huffman ? 0x80 : 0);
  return Buffer.concat([prefix, data]);
}

export function encodeInteger(value: number, prefixBits: number, flags: number): Buffer {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return Buffer.from([flags | value]);
  const bytes = [flags | mask];
  let rest = value - mask;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}
