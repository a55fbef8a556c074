// The frame and HPACK layer that lets any :authority through: what nghttp2
// finally reads must be the client's headers with only a refused authority
// changed, whatever the chunking, padding, CONTINUATION, Huffman coding or
// table-size updates; and Node's HTTP/2 server must answer every such request.
import { describe, it, after, before } from "node:test";
import assert from "node:assert/strict";
import { createServer as createH2Server, type Http2Server } from "node:http2";
import { createServer, type Server } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthorityRewriter, serveConnection } from "./h2-authority.js";
import { huffmanDecode, huffmanEncode, HuffmanError } from "./hpack-huffman.js";
import { AuthorityScanner } from "./hpack-authority.js";
import {
  Flag, FrameReader, FrameType, HpackDecoder, PREFACE, RawH2Connection, frame, headersFragment, hpack, type Frame,
} from "../test/fixtures/h2-probe.js";

const PATH = "/run/crib/crib.sock";
const SANITIZED = "_run_crib_crib.sock";

describe("HPACK Huffman code", () => {
  it("encodes and decodes RFC 7541 C.4's strings", () => {
    const vectors: [string, string][] = [
      ["www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"], ["no-cache", "a8eb10649cbf"],
      ["custom-key", "25a849e95ba97d7f"], ["custom-value", "25a849e95bb8e8b4bf"],
    ];
    for (const [text, hex] of vectors) {
      assert.equal(huffmanEncode(Buffer.from(text)).toString("hex"), hex, text);
      assert.equal(huffmanDecode(Buffer.from(hex, "hex")).toString(), text, hex);
    }
  });

  it("round-trips every octet value", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assert.deepEqual(huffmanDecode(huffmanEncode(all)), all);
  });

  it("refuses padding that is not a prefix of EOS, and EOS itself", () => {
    assert.throws(() => huffmanDecode(Buffer.from([0x00])), HuffmanError); // '0' then 3 zero bits of padding
    assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), HuffmanError);
  });
});

// A client's side of a connection: an encoder whose table the test tracks with a decoder.
interface Sent {
  bytes: Buffer;
  blocks: { streamId: number; fields: [string, string][] }[];
  others: Buffer[]; // every non-header frame, as sent
}

function clientBytes(build: (emit: { block(streamId: number, fragments: Buffer[], opts?: { padded?: number; priority?: boolean; endStream?: boolean }): void; other(f: Buffer): void }) => void): Sent {
  const decoder = new HpackDecoder();
  const parts: Buffer[] = [PREFACE, frame(FrameType.SETTINGS, 0, 0, Buffer.from([0, 1, 0, 0, 0x10, 0]))];
  const sent: Sent = { bytes: Buffer.alloc(0), blocks: [], others: [] };
  build({
    block(streamId, fragments, opts = {}) {
      sent.blocks.push({ streamId, fields: decoder.decode(Buffer.concat(fragments)) });
      fragments.forEach((fragment, i) => {
        const last = i === fragments.length - 1;
        if (i > 0) { parts.push(frame(FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, streamId, fragment)); return; }
        let flags = (last ? Flag.END_HEADERS : 0) | (opts.endStream ? Flag.END_STREAM : 0);
        const payload: Buffer[] = [];
        if (opts.padded !== undefined) { flags |= Flag.PADDED; payload.push(Buffer.from([opts.padded])); }
        if (opts.priority) { flags |= Flag.PRIORITY; payload.push(Buffer.from([0x80, 0, 0, 0, 15])); }
        payload.push(fragment, Buffer.alloc(opts.padded ?? 0));
        parts.push(frame(FrameType.HEADERS, flags, streamId, Buffer.concat(payload)));
      });
    },
    other(f) { sent.others.push(f); parts.push(f); },
  });
  sent.bytes = Buffer.concat(parts);
  return sent;
}

/** What nghttp2 would read: the rewriter's output for `bytes` cut into chunks at `cuts`. */
function rewrite(bytes: Buffer, cuts: number[], rewriter = new AuthorityRewriter()): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...rewriter.feed(bytes.subarray(at, cut)));
    at = cut;
  }
  return Buffer.concat(out);
}

function readBack(bytes: Buffer): { blocks: { streamId: number; fields: [string, string][] }[]; others: Buffer[] } {
  assert.deepEqual(bytes.subarray(0, PREFACE.length), PREFACE);
  const frames = new FrameReader(true).push(bytes);
  const decoder = new HpackDecoder();
  const blocks: { streamId: number; fields: [string, string][] }[] = [];
  const others: Buffer[] = [];
  let open: { streamId: number; fragments: Buffer[] } | undefined;
  const raw = (f: Frame) => frame(f.type, f.flags, f.streamId, f.payload);
  for (const f of frames.slice(1)) { // after the client's SETTINGS
    if (f.type === FrameType.HEADERS) open = { streamId: f.streamId, fragments: [headersFragment(f)] };
    else if (f.type === FrameType.CONTINUATION) open!.fragments.push(f.payload);
    else { others.push(raw(f)); continue; }
    if (f.flags & Flag.END_HEADERS) {
      blocks.push({ streamId: open!.streamId, fields: decoder.decode(Buffer.concat(open!.fragments)) });
      open = undefined;
    }
  }
  return { blocks, others };
}

// What nghttp2 should read: refused authorities made acceptable, a missing one supplied.
const sanitize = (fields: [string, string][]): [string, string][] => [
  ...(fields.some(([n]) => n === ":authority" || n === "host") ? [] : [[":authority", "localhost"] as [string, string]]),
  ...fields.map(([n, v]): [string, string] => [n, n === ":authority" || n === "host" ? (v === "" ? "localhost" : v.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]/g, "_")) : v]),
];

const request = (authority: Buffer[]) => [hpack.indexed(3), hpack.indexed(6), hpack.literal(4, "/runtime.v1.RuntimeService/Version"), ...authority];

// Every way a client may say its authority, one request each, some needing the dynamic table of the ones before.
const mixed = clientBytes(({ block, other }) => {
  block(1, [Buffer.concat(request([hpack.literal(1, PATH, { indexing: "incremental" })]))], { endStream: true });
  other(frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 0x10, 0])));
  block(3, [Buffer.concat(request([hpack.indexed(62)]))], { endStream: true }); // the entry added above
  block(5, [Buffer.concat(request([hpack.literal(1, PATH, { huffman: true, indexing: "incremental" })]))], { padded: 7, priority: true });
  other(frame(FrameType.DATA, Flag.END_STREAM, 5, Buffer.from([0, 0, 0, 0, 0])));
  block(7, [Buffer.concat(request([hpack.literal(":authority", "%2Frun%2Fcrib%2Fcrib.sock", { huffmanName: true, indexing: "never" })]))], { endStream: true });
  // a literal whose name is a dynamic entry named :authority
  block(9, [Buffer.concat(request([hpack.literal(63, "/other path?", { indexing: "incremental", huffman: true })]))], { endStream: true });
  block(11, [Buffer.concat(request([hpack.literal(1, "localhost")]))], { endStream: true });
  block(13, [Buffer.concat(request([hpack.literal(1, "")]))], { endStream: true });
  block(15, [Buffer.concat(request([]))], { endStream: true }); // no authority
  block(17, [Buffer.concat(request([hpack.literal(38, "/host/header", { indexing: "incremental", huffman: true })]))], { endStream: true });
  // the authority split over HEADERS and two CONTINUATIONs, in the middle of its string
  const split = Buffer.concat(request([hpack.literal(1, `${PATH}-split`, { huffman: true, indexing: "incremental" })]));
  block(19, [split.subarray(0, split.length - 9), split.subarray(split.length - 9, split.length - 4), split.subarray(split.length - 4)], { endStream: true });
  // shrink the table to nothing (everything evicted), then grow it again and index a new authority
  block(21, [Buffer.concat([hpack.sizeUpdate(0), hpack.sizeUpdate(200), ...request([hpack.literal(1, PATH, { indexing: "incremental" })])])], { endStream: true });
  block(23, [Buffer.concat(request([hpack.indexed(62)]))], { endStream: true });
  // entries larger than the table evict all; then more entries than fit, so the oldest go
  block(25, [Buffer.concat([hpack.literal("x-big", "y".repeat(300), { indexing: "incremental" }), ...request([hpack.literal(1, "/a", { indexing: "incremental" })])])], { endStream: true });
  for (let i = 0; i < 8; i++) {
    const fields = [hpack.literal(`x-${i}`, "z".repeat(20), { indexing: "incremental" }), ...request([hpack.literal(1, `/p${i}`, { indexing: "incremental", huffman: i % 2 === 0 })])];
    block(27 + 2 * i, [Buffer.concat([...fields, hpack.indexed(63)])], { endStream: true }); // 63: the entry before the last
  }
  other(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
});

describe("AuthorityRewriter", () => {
  it("hands on the client's headers with only refused authorities changed, and every other frame as sent", () => {
    const got = readBack(rewrite(mixed.bytes, []));
    assert.deepEqual(got.blocks, mixed.blocks.map((b) => ({ streamId: b.streamId, fields: sanitize(b.fields) })));
    assert.deepEqual(got.others, mixed.others);
    // the test's own check: the input did hold refused authorities
    assert.ok(mixed.blocks.some((b) => b.fields.some(([n, v]) => n === ":authority" && v === PATH)));
    assert.ok(got.blocks.some((b) => b.fields.some(([n, v]) => n === ":authority" && v === SANITIZED)));
  });

  it("gives the same result however the bytes are cut into chunks", () => {
    const whole = rewrite(mixed.bytes, []);
    for (const size of [1, 2, 3, 7, 9, 10, 17, 64]) {
      const cuts = Array.from({ length: Math.floor((mixed.bytes.length - 1) / size) }, (_, i) => (i + 1) * size);
      assert.deepEqual(rewrite(mixed.bytes, cuts), whole, `chunks of ${size}`);
    }
    for (let seed = 1; seed <= 50; seed++) {
      let x = seed;
      const cuts: number[] = [];
      for (let at = 0; ; ) { x = (x * 1103515245 + 12345) % 2 ** 31; at += 1 + (x % 40); if (at >= mixed.bytes.length) break; cuts.push(at); }
      assert.deepEqual(rewrite(mixed.bytes, cuts), whole, `random cuts, seed ${seed}`);
    }
  });

  it("passes a chunk without header frames as the very same Buffer", () => {
    const r = new AuthorityRewriter();
    r.feed(mixed.bytes.subarray(0, PREFACE.length + 15)); // preface + SETTINGS
    const data = frame(FrameType.DATA, 0, 1, Buffer.alloc(1000));
    const out = r.feed(data);
    assert.equal(out.length, 1);
    assert.equal(out[0], data);
  });

  it("leaves a block alone when its authority is acceptable", () => {
    const ok = clientBytes(({ block }) => block(1, [Buffer.concat(request([hpack.literal(1, "localhost", { huffman: true })]))], { padded: 3 }));
    const r = new AuthorityRewriter();
    assert.deepEqual(rewrite(ok.bytes, [], r), ok.bytes);
    assert.equal(r.rewritten, 0);
    assert.equal(r.blocks, 1);
  });

  it("re-frames a block whose rewrite changes its length, keeping END_STREAM and the priority", () => {
    // ' ' has an 8-bit code, '_' a 6-bit one: the Huffman string gets shorter
    const odd = clientBytes(({ block }) => block(1, [Buffer.concat(request([hpack.literal(1, "a b c d e f g h", { huffman: true })]))], { padded: 4, priority: true, endStream: true }));
    const out = rewrite(odd.bytes, []);
    const frames = new FrameReader(true).push(out);
    const headers = frames.find((f) => f.type === FrameType.HEADERS)!;
    assert.equal(headers.flags & (Flag.END_STREAM | Flag.PRIORITY | Flag.END_HEADERS | Flag.PADDED), Flag.END_STREAM | Flag.PRIORITY | Flag.END_HEADERS);
    assert.deepEqual(headers.payload.subarray(0, 5), Buffer.from([0x80, 0, 0, 0, 15]));
    assert.deepEqual(readBack(out).blocks[0]!.fields.find(([n]) => n === ":authority"), [":authority", "a_b_c_d_e_f_g_h"]);
  });

  it("drops the ACK of a SETTINGS frame sent on the server's behalf, once", () => {
    const ack = frame(FrameType.SETTINGS, Flag.ACK, 0);
    const r = new AuthorityRewriter({ absorbSettingsAcks: 1 });
    const settings = mixed.bytes.subarray(0, PREFACE.length + 15);
    const out = Buffer.concat([...r.feed(settings), ...r.feed(Buffer.concat([ack, ack]))]);
    assert.deepEqual(out, Buffer.concat([settings, ack]));
    assert.equal(r.acksPending, 0);
  });

  it("stops reading a connection that breaks the protocol, and hands it on untouched", () => {
    const stray = Buffer.concat([PREFACE, frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, hpack.literal(1, PATH))]);
    const r = new AuthorityRewriter();
    assert.deepEqual(rewrite(stray, [PREFACE.length + 4], r), stray);
    assert.equal(r.transparent, true);
    const notH2 = Buffer.from("GET / HTTP/1.1\r\nHost: /x\r\n\r\n");
    assert.deepEqual(rewrite(notH2, [3]), notH2);
    const badIndex = Buffer.concat([PREFACE, frame(FrameType.HEADERS, Flag.END_HEADERS, 1, hpack.indexed(70))]);
    assert.deepEqual(rewrite(badIndex, []), badIndex);
  });
});

describe("AuthorityScanner's table mirror", () => {
  it("follows size updates and evicts the oldest entries as the peer's table does", () => {
    const s = new AuthorityScanner();
    const d = new HpackDecoder();
    const blocks = [
      Buffer.concat([hpack.literal("a", "1".repeat(10), { indexing: "incremental" }), hpack.literal(1, PATH, { indexing: "incremental" })]),
      Buffer.concat([hpack.sizeUpdate(100)]), // the oldest goes
      Buffer.concat([hpack.literal("b", "2", { indexing: "incremental" })]), // fits
      Buffer.concat([hpack.sizeUpdate(0), hpack.sizeUpdate(4096)]),
    ];
    const expect = [[2, 104], [1, 61], [2, 95], [0, 0]]; // entry sizes: 43 and 61, then 34
    blocks.forEach((b, i) => {
      s.scan(b);
      d.decode(b);
      assert.deepEqual([s.table.entries, s.table.size], expect[i], `after block ${i}`);
      assert.equal(s.table.entries, d.table.length);
    });
  });
});

describe("Node's HTTP/2 server behind serveConnection", () => {
  let dir: string;
  let h2: Http2Server;
  let plain: Server;
  let viaLayer: Server;
  const injected: string[] = []; // what each connection was handed to the server as
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crib-h2-authority-"));
    h2 = createH2Server();
    h2.on("stream", (stream, headers) => {
      stream.respond({ ":status": 200 });
      stream.end(String(headers[":authority"] ?? "(none)"));
    });
    plain = createServer((s) => h2.emit("connection", s));
    viaLayer = createServer((s) => serveConnection(s, (c) => {
      injected.push(c === s ? "socket" : c.constructor.name);
      h2.emit("connection", c);
    }));
    await Promise.all([
      new Promise<void>((r) => plain.listen(join(dir, "plain.sock"), r)),
      new Promise<void>((r) => viaLayer.listen(join(dir, "layer.sock"), r)),
    ]);
  });
  after(async () => {
    plain.close();
    viaLayer.close();
    h2.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function ask(socket: string, sent: Sent): Promise<{ status: string | undefined; body: string; rst?: number }[]> {
    const c = await RawH2Connection.open(join(dir, socket));
    try {
      c.send(sent.bytes.subarray(PREFACE.length + 15)); // open() sent the preface and SETTINGS
      const ids = [...new Set(sent.blocks.map((b) => b.streamId))];
      return await Promise.all(ids.map(async (id) => {
        const r = await c.result(id);
        return { status: r.headers.find(([n]) => n === ":status")?.[1], body: r.data.toString(), ...(r.rstCode === undefined ? {} : { rst: r.rstCode }) };
      }));
    } finally {
      c.close();
    }
  }

  const get = (id: number, authority: Buffer[]) => ({ id, fields: [hpack.indexed(2), hpack.indexed(6), hpack.indexed(4), ...authority] });
  const kinds = clientBytes(({ block }) => {
    for (const { id, fields } of [
      get(1, [hpack.literal(1, PATH, { indexing: "incremental" })]),
      get(3, [hpack.indexed(62)]),
      get(5, [hpack.literal(1, PATH, { huffman: true })]),
      get(7, [hpack.literal(":authority", PATH, { huffman: true, huffmanName: true, indexing: "never" })]),
      get(9, [hpack.literal(1, "%2Frun%2Fcrib%2Fcrib.sock", { huffman: true })]),
      get(11, [hpack.literal(1, "localhost")]),
      get(13, [hpack.literal(1, "")]),
      get(15, []),
    ]) block(id, [Buffer.concat(fields)], { endStream: true, padded: 2 });
  });

  it("answers every kind of authority", async () => {
    const answers = await ask("layer.sock", kinds);
    assert.deepEqual(answers.map((a) => [a.status, a.rst]), Array(8).fill(["200", undefined]));
    assert.deepEqual(answers.map((a) => a.body), [SANITIZED, SANITIZED, SANITIZED, SANITIZED, "%2Frun%2Fcrib%2Fcrib.sock", "localhost", "localhost", "localhost"]);
  });

  it("(without it, nghttp2 resets the streams whose authority is a path, or that have none)", async () => {
    const answers = await ask("plain.sock", kinds);
    assert.deepEqual(answers.map((a) => a.rst), [1, 1, 1, 1, undefined, undefined, 1, 1]); // PROTOCOL_ERROR
  });

  it("serves a client that waits for the server's preface before its first request (as grpc-go does)", async () => {
    const c = await RawH2Connection.open(join(dir, "layer.sock"));
    try {
      await new Promise((r) => setTimeout(r, 100)); // the server preface is sent without waiting for a request
      c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, Buffer.concat(get(1, [hpack.literal(1, "localhost")]).fields)));
      const r = await c.result(1);
      assert.equal(r.data.toString(), "localhost");
      assert.equal(c.goaway, undefined);
    } finally {
      c.close();
    }
  });

  it("hands a connection whose first request needs no change to Node's HTTP/2 as the socket itself", async () => {
    injected.length = 0;
    const fine = clientBytes(({ block }) => {
      block(1, [Buffer.concat(get(1, [hpack.literal(1, "localhost", { indexing: "incremental" })]).fields)], { endStream: true });
      block(3, [Buffer.concat(get(3, [hpack.indexed(62)]).fields)], { endStream: true });
    });
    assert.deepEqual((await ask("layer.sock", fine)).map((a) => a.body), ["localhost", "localhost"]);
    assert.deepEqual((await ask("layer.sock", kinds)).map((a) => a.status), Array(8).fill("200"));
    assert.deepEqual(injected, ["socket", "AuthorityStream"]);
  });

  it("serves requests sent a few octets at a time", async () => {
    const c = await RawH2Connection.open(join(dir, "layer.sock"));
    try {
      await c.serverSettings; // its ACK must not land inside the request
      const one = clientBytes(({ block }) => block(1, [Buffer.concat(get(1, [hpack.literal(1, PATH, { huffman: true })]).fields)], { endStream: true, priority: true }));
      await c.sendSplit(one.bytes.subarray(PREFACE.length + 15), 3);
      assert.equal((await c.result(1)).data.toString(), SANITIZED);
    } finally {
      c.close();
    }
  });
});
