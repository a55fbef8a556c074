// A frame layer between a client's socket and Node's HTTP/2 server that makes any
// `:authority` acceptable. nghttp2 resets every stream whose authority holds a
// '/', and grpc-go (kubelet and crictl ≤ 1.26) sends the socket path there;
// containerd accepts it. Only the client's HEADERS/CONTINUATION frames are
// read; every other frame is handed on as a slice of the chunk it came in.
import { Duplex } from "node:stream";
import type { Socket } from "node:net";
import { AuthorityScanner, encodeInteger, encodeString, type Rewrite } from "./hpack-authority.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADER = 9;
const HEADERS = 0x1;
const SETTINGS = 0x4;
const PING = 0x6;
const CONTINUATION = 0x9;
const ACK = 0x1;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
/** SETTINGS_MAX_FRAME_SIZE's initial value: rebuilt frames never exceed it. */
const MAX_FRAME = 16_384;
/**
 * Given to a request that names no authority, which nghttp2 refuses and HTTP/2
 * allows: a literal without indexing, so neither table changes.
 */
const NO_AUTHORITY = Buffer.concat([encodeInteger(1, 4, 0), encodeString(Buffer.from("localhost"), false)]);
/** A header block larger than this is not held back; nghttp2's own limits apply to it. */
const MAX_BLOCK = 1 << 20;

interface OpenBlock {
  frames: Buffer[]; // as received, for when nothing needs a change
  fragments: Buffer[];
  bytes: number;
  streamId: number;
  flags: number; // of the HEADERS frame
  priority: Buffer | undefined;
}

export class AuthorityRewriter {
  readonly #scanner = new AuthorityScanner();
  #prefaceLeft = PREFACE.length;
  #transparent = false; // after a protocol error: everything passes untouched
  readonly #head = Buffer.alloc(FRAME_HEADER);
  #headBytes = 0;
  #skip = 0; // payload octets of a passed-through frame still to come
  #frame: { header: Buffer; payload: Buffer[]; left: number } | undefined; // a HEADERS/CONTINUATION frame being read
  #block: OpenBlock | undefined;
  #lastStreamId = 0; // the highest stream the client has opened: a HEADERS above it opens one, others are trailers
  #acksToAbsorb: number;
  /** Complete header blocks seen, and those of them that needed a rewrite. */
  blocks = 0;
  rewritten = 0;
  /** PING frames seen (the client waits for their answer). */
  pings = 0;

  /** `absorbSettingsAcks`: SETTINGS frames sent to the client by someone else than the server: their ACKs are dropped. */
  constructor(opts: { absorbSettingsAcks?: number } = {}) {
    this.#acksToAbsorb = opts.absorbSettingsAcks ?? 0;
  }

  get acksPending(): number {
    return this.#acksToAbsorb;
  }

  get transparent(): boolean {
    return this.#transparent;
  }

  /** What is held back (an incomplete frame or header block), unchanged; the rewriter is transparent afterwards. */
  drain(): Buffer[] {
    const held: Buffer[] = [];
    if (this.#block) held.push(...this.#block.frames);
    if (this.#frame) held.push(this.#frame.header, ...this.#frame.payload);
    if (this.#headBytes > 0) held.push(Buffer.from(this.#head.subarray(0, this.#headBytes)));
    this.#block = undefined;
    this.#frame = undefined;
    this.#headBytes = 0;
    this.#transparent = true;
    return held;
  }

  /** Takes the next chunk from the client; returns what to hand to the server, in order. */
  feed(chunk: Buffer): Buffer[] {
    if (this.#transparent) return [chunk];
    const out: Buffer[] = [];
    let pos = 0;
    let passFrom = 0; // start of the run of octets passed through untouched
    const flushPass = (to: number) => {
      if (to > passFrom) out.push(passFrom === 0 && to === chunk.length ? chunk : chunk.subarray(passFrom, to));
    };

    if (this.#prefaceLeft > 0) {
      const n = Math.min(this.#prefaceLeft, chunk.length);
      const offset = PREFACE.length - this.#prefaceLeft;
      if (!chunk.subarray(0, n).equals(PREFACE.subarray(offset, offset + n))) return this.#giveUp(out, chunk);
      this.#prefaceLeft -= n;
      pos = n;
    }

    while (pos < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - pos);
        this.#skip -= n;
        pos += n;
        continue;
      }
      if (this.#frame) {
        const n = Math.min(this.#frame.left, chunk.length - pos);
        this.#frame.payload.push(chunk.subarray(pos, pos + n));
        this.#frame.left -= n;
        pos += n;
        passFrom = pos;
        if (this.#frame.left === 0) {
          const { header, payload } = this.#frame;
          this.#frame = undefined;
          const whole = Buffer.concat(payload);
          if (!this.#headerFrame(header, whole, out)) return this.#giveUp(out, Buffer.concat([header, whole, chunk.subarray(pos)]));
        }
        continue;
      }
      // A frame header. One split across chunks is held until its type is known.
      let header: Buffer;
      let held = false;
      if (this.#headBytes === 0 && chunk.length - pos >= FRAME_HEADER) {
        header = chunk.subarray(pos, pos + FRAME_HEADER);
        pos += FRAME_HEADER;
      } else {
        flushPass(pos);
        const n = Math.min(FRAME_HEADER - this.#headBytes, chunk.length - pos);
        chunk.copy(this.#head, this.#headBytes, pos, pos + n);
        this.#headBytes += n;
        pos += n;
        passFrom = pos;
        if (this.#headBytes < FRAME_HEADER) break;
        this.#headBytes = 0;
        header = Buffer.from(this.#head);
        held = true;
      }
      const length = header.readUIntBE(0, 3);
      const type = header[3]!;
      if (type === SETTINGS && header[4]! & ACK && length === 0 && this.#acksToAbsorb > 0 && !this.#block) {
        if (!held) flushPass(pos - FRAME_HEADER);
        passFrom = pos;
        this.#acksToAbsorb--;
        continue;
      }
      if (type === PING) this.pings++;
      if (type !== HEADERS && type !== CONTINUATION && !this.#block) {
        if (held) out.push(header);
        this.#skip = length;
        continue;
      }
      if (!held) flushPass(pos - FRAME_HEADER);
      passFrom = pos;
      if (type !== CONTINUATION && this.#block) return this.#giveUp(out, Buffer.concat([header, chunk.subarray(pos)]));
      if (length > 0) {
        this.#frame = { header: Buffer.from(header), payload: [], left: length };
      } else if (!this.#headerFrame(Buffer.from(header), Buffer.alloc(0), out)) {
        return this.#giveUp(out, Buffer.concat([header, chunk.subarray(pos)]));
      }
    }
    flushPass(pos);
    return out;
  }

  // One complete HEADERS or CONTINUATION frame. False on a protocol error.
  #headerFrame(header: Buffer, payload: Buffer, out: Buffer[]): boolean {
    const type = header[3]!;
    const flags = header[4]!;
    const streamId = header.readUInt32BE(5) & 0x7fffffff;
    if (type === HEADERS) {
      let start = 0;
      let pad = 0;
      if (flags & PADDED) {
        if (payload.length < 1) return false;
        pad = payload[0]!;
        start = 1;
      }
      let priority: Buffer | undefined;
      if (flags & PRIORITY) {
        if (payload.length < start + 5) return false;
        priority = payload.subarray(start, start + 5);
        start += 5;
      }
      if (payload.length - start < pad) return false;
      this.#block = { frames: [], fragments: [], bytes: 0, streamId, flags, priority };
    } else if (!this.#block || this.#block.streamId !== streamId) {
      return false;
    }
    const block = this.#block!;
    const fragment = type === HEADERS ? headersFragment(flags, payload) : payload;
    if (block.bytes + fragment.length > MAX_BLOCK) return false;
    block.frames.push(header, payload);
    block.fragments.push(fragment);
    block.bytes += fragment.length;
    if (!(flags & END_HEADERS)) return true;
    this.#block = undefined;
    this.blocks++;
    const fragments = Buffer.concat(block.fragments);
    const opens = block.streamId > this.#lastStreamId;
    if (opens) this.#lastStreamId = block.streamId;
    let rewrites: Rewrite[];
    try {
      const scan = this.#scanner.scan(fragments);
      rewrites = scan.rewrites;
      // pseudo-header fields come first, after the table-size updates
      if (opens && !scan.authority) rewrites.unshift({ start: scan.fieldsStart, end: scan.fieldsStart, bytes: NO_AUTHORITY });
    } catch {
      // nghttp2 will answer with COMPRESSION_ERROR; hand it the block unchanged
      out.push(...block.frames);
      this.#transparent = true;
      return true;
    }
    if (rewrites.length === 0) {
      out.push(...block.frames);
    } else {
      this.rewritten++;
      out.push(...frameBlock(applyRewrites(fragments, rewrites), block));
    }
    return true;
  }

  #giveUp(out: Buffer[], rest: Buffer): Buffer[] {
    if (this.#block) out.push(...this.#block.frames);
    this.#block = undefined;
    this.#transparent = true;
    if (rest.length > 0) out.push(rest);
    return out;
  }
}

function headersFragment(flags: number, payload: Buffer): Buffer {
  let start = 0;
  let pad = 0;
  if (flags & PADDED) { pad = payload[0]!; start = 1; }
  if (flags & PRIORITY) start += 5;
  return payload.subarray(start, payload.length - pad);
}

function applyRewrites(block: Buffer, rewrites: Rewrite[]): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const r of rewrites) {
    parts.push(block.subarray(at, r.start), r.bytes);
    at = r.end;
  }
  parts.push(block.subarray(at));
  return Buffer.concat(parts);
}

/** The block as one HEADERS frame (its END_STREAM and priority kept, no padding) and CONTINUATIONs as needed. */
function frameBlock(fragments: Buffer, block: OpenBlock): Buffer[] {
  const frames: Buffer[] = [];
  const priority = block.priority;
  let at = 0;
  let first = true;
  do {
    const room = MAX_FRAME - (first && priority ? priority.length : 0);
    const piece = fragments.subarray(at, at + room);
    at += piece.length;
    let flags = at >= fragments.length ? END_HEADERS : 0;
    if (first) flags |= (block.flags & END_STREAM) | (priority ? PRIORITY : 0);
    const payload = first && priority ? Buffer.concat([priority, piece]) : piece;
    const header = Buffer.alloc(FRAME_HEADER);
    header.writeUIntBE(payload.length, 0, 3);
    header[3] = first ? HEADERS : CONTINUATION;
    header[4] = flags;
    header.writeUInt32BE(block.streamId, 5);
    frames.push(header, payload);
    first = false;
  } while (at < fragments.length);
  return frames;
}

/**
 * The client's socket as grpc-js sees it: reads pass through an AuthorityRewriter,
 * writes go straight to the socket.
 */
export class AuthorityStream extends Duplex {
  readonly #socket: Socket;

  constructor(socket: Socket, rewriter = new AuthorityRewriter(), already: Buffer[] = []) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    for (const piece of already) this.push(piece);
    socket.on("data", (chunk: Buffer) => {
      let more = true;
      for (const piece of rewriter.feed(chunk)) more = this.push(piece);
      if (!more) socket.pause();
    });
    socket.once("end", () => this.push(null));
    socket.once("error", (err) => this.destroy(err));
    socket.once("close", () => this.destroy());
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#socket.write(chunk, done);
  }

  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    this.#socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.#socket.write(chunks[i]!.chunk);
    this.#socket.write(chunks[chunks.length - 1]!.chunk, done);
    this.#socket.uncork();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#socket.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#socket.destroy();
    done(err);
  }
}

/** An empty SETTINGS frame: the server's connection preface. */
const SERVER_PREFACE = Buffer.from([0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
/** How long a silent client may keep a connection undecided before it gets the rewriting path. */
const DECIDE_MS = 1000;
const DECIDE_BYTES = 1 << 20;

/**
 * Serves one accepted client connection. A client whose first header block
 * nghttp2 accepts as is (grpc-js, grpc-go dialling `unix:`) gets the socket
 * itself, read natively by Node's HTTP/2 as before; any other gets an
 * AuthorityStream for the life of the connection, which costs ~30 µs a call.
 *
 * grpc-go waits for the server's preface before its first request, so the
 * preface is sent here, before nghttp2 is attached; the client's ACK of it is
 * dropped, and nghttp2's own SETTINGS follow as a second, ordinary SETTINGS frame.
 * Returns a function that ends the connection while it is still undecided.
 */
export function serveConnection(socket: Socket, inject: (connection: Duplex) => void): () => void {
  const rewriter = new AuthorityRewriter({ absorbSettingsAcks: 1 });
  const out: Buffer[] = [];
  let bytes = 0;
  let decided = false;
  const decide = (native: boolean) => {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("end", onEnd);
    socket.pause();
    if (native) {
      const seen = Buffer.concat([...out, ...rewriter.drain()]);
      if (seen.length > 0) socket.unshift(seen);
      inject(socket);
    } else {
      inject(new AuthorityStream(socket, rewriter, out));
    }
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    out.push(...rewriter.feed(chunk));
    if (rewriter.rewritten > 0 || rewriter.pings > 0 || rewriter.transparent || bytes > DECIDE_BYTES) decide(false);
    else if (rewriter.blocks > 0 && rewriter.acksPending === 0) decide(true);
  };
  const onEnd = () => { decided = true; clearTimeout(timer); socket.destroy(); };
  const timer = setTimeout(() => decide(false), DECIDE_MS);
  timer.unref();
  socket.on("data", onData);
  socket.once("end", onEnd);
  socket.write(SERVER_PREFACE);
  return () => { if (!decided) onEnd(); };
}
