import assert from "node:assert/strict";
import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CriLineEncoder, CriLogFile, HEADER_BYTES } from "./cri-log.js";

type Entry = [tag: "P" | "F", content: string];

/** Parses encoder output, checking every entry's header. */
function parse(out: Buffer, stream = "stdout"): Entry[] {
  const text = out.toString("latin1");
  if (text === "") return [];
  assert.ok(text.endsWith("\n"), "every entry ends with a newline");
  return text.slice(0, -1).split("\n").map((line) => {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([PF]) ([^]*)$/.exec(line);
    assert.ok(m, `malformed entry ${JSON.stringify(line.slice(0, 80))}`);
    assert.equal(m[2], stream);
    assert.equal(line.indexOf(" "), 30, "the timestamp is 30 characters");
    assert.ok(line.length >= HEADER_BYTES);
    return [m[3] as "P" | "F", m[4]!];
  });
}

/** Feeds `chunks` to a fresh encoder and returns every entry, EOF included. */
function encodeAll(chunks: string[], max: number): Entry[] {
  const e = new CriLineEncoder("stdout", max);
  const outs = chunks.map((c) => e.encode(Buffer.from(c, "latin1")));
  return parse(Buffer.concat([...outs, e.end()]));
}

/**
 * containerd's redirectLogs/readLine (pkg/cri/io/logger.go) on a whole input,
 * with its bufio.Reader of min(4096, maxLen) bytes (bufio's floor is 16): the
 * behaviour to match. (Below 16 bytes containerd's pieces are no longer exact;
 * max_log_line_size is never that small.)
 */
function containerdEntries(input: Buffer, maxLen: number): Entry[] {
  const size = Math.max(16, Math.min(4096, maxLen));
  const out: Entry[] = [];
  let pos = 0;
  let buf: Buffer[] = [];
  let length = 0;
  const emit = (tag: "P" | "F", parts: Buffer[]): void => void out.push([tag, Buffer.concat(parts).toString("latin1")]);
  for (;;) {
    const window = input.subarray(pos, pos + Math.min(size, input.length - pos));
    const nl = window.indexOf(0x0a);
    let line: Buffer;
    let isPrefix = false;
    let eof = false;
    if (nl >= 0) {
      line = window.subarray(0, nl + 1);
      pos += nl + 1;
      const drop = line.length > 1 && line[line.length - 2] === 0x0d ? 2 : 1;
      line = line.subarray(0, line.length - drop);
    } else if (window.length === size) {
      line = window;
      pos += size;
      if (line[line.length - 1] === 0x0d) {
        pos--;
        line = line.subarray(0, -1);
      }
      isPrefix = true;
    } else {
      line = window;
      pos += window.length;
      eof = true;
    }
    if (line.length > 0) {
      buf.push(Buffer.from(line));
      length += line.length;
    }
    if (eof && length === 0) break;
    if (length > maxLen) {
      const exceed = length - maxLen;
      const last = buf[buf.length - 1]!;
      buf[buf.length - 1] = last.subarray(0, last.length - exceed);
      emit("P", buf);
      buf = [last.subarray(last.length - exceed)];
      length = exceed;
    }
    if (isPrefix) continue;
    emit(eof ? "P" : "F", buf);
    buf = [];
    length = 0;
    if (eof) break;
  }
  return out;
}

test("many lines of one read become one buffer of entries", () => {
  const e = new CriLineEncoder("stderr", 16384);
  const out = e.encode(Buffer.from("a\nbb\n\nccc\n"));
  assert.deepEqual(parse(out, "stderr"), [["F", "a"], ["F", "bb"], ["F", ""], ["F", "ccc"]]);
  const stamps = out.toString().split("\n").filter(Boolean).map((l) => l.slice(0, 30));
  assert.deepEqual([...stamps].sort(), stamps, "timestamps keep the lines in order");
  assert.equal(new Set(stamps).size, stamps.length);
});

test("a trailing \\r before \\n is dropped, as containerd logs printf 'red\\r\\n'", () => {
  assert.deepEqual(encodeAll(["red\r\n"], 16384), [["F", "red"]]);
  assert.deepEqual(encodeAll(["red\r", "\n"], 16384), [["F", "red"]], "\\r and \\n in two reads");
  assert.deepEqual(encodeAll(["a\rb\n", "\r\r\n", "\r"], 16384), [["F", "a\rb"], ["F", "\r"], ["P", "\r"]], "other \\r are content");
  assert.deepEqual(encodeAll(["x\r", "y\n"], 16384), [["F", "x\ry"]]);
});

test("lines longer than the max are split into P pieces of exactly the max, the last one F", () => {
  assert.deepEqual(encodeAll(["abcdefghij\n"], 4), [["P", "abcd"], ["P", "efgh"], ["F", "ij"]]);
  assert.deepEqual(encodeAll(["abcd\n"], 4), [["F", "abcd"]], "a line of exactly the max is one F");
  assert.deepEqual(encodeAll(["abcd", "\n"], 4), [["F", "abcd"]], "… also when its newline comes in the next read");
  assert.deepEqual(encodeAll(["abcd\r", "\n"], 4), [["F", "abcd"]]);
  assert.deepEqual(encodeAll(["abcd\r", "e\n"], 4), [["P", "abcd"], ["F", "\re"]]);
  assert.deepEqual(encodeAll(["ab", "cd", "ef", "gh", "i\n"], 4), [["P", "abcd"], ["P", "efgh"], ["F", "i"]]);
});

test("an unfinished line waits for its newline and is a P entry at EOF", () => {
  const e = new CriLineEncoder("stdout", 16384);
  assert.equal(e.encode(Buffer.from("no newline yet")).length, 0);
  assert.equal(e.pending, 14);
  assert.deepEqual(parse(e.encode(Buffer.from(", now\nmore"))), [["F", "no newline yet, now"]]);
  assert.deepEqual(parse(e.end()), [["P", "more"]]);
  assert.equal(e.end().length, 0, "nothing left");
  assert.deepEqual(encodeAll(["abcdef"], 4), [["P", "abcd"], ["P", "ef"]]);
  assert.deepEqual(encodeAll(["tail\r"], 16384), [["P", "tail\r"]], "a \\r at EOF is kept, as containerd keeps it");
});

test("encoders of many streams, fed in turn, each keep their own unfinished line (their scratch is shared)", () => {
  const encoders = Array.from({ length: 50 }, (_, i) => new CriLineEncoder(i % 2 ? "stderr" : "stdout", 8));
  const out = encoders.map(() => [] as Array<[string, string]>);
  for (let round = 0; round < 3; round++) {
    encoders.forEach((e, i) => out[i]!.push(...parse(e.encode(Buffer.from(`s${i}r${round}-`)), i % 2 ? "stderr" : "stdout")));
  }
  encoders.forEach((e, i) => out[i]!.push(...parse(e.encode(Buffer.from("\n")), i % 2 ? "stderr" : "stdout")));
  encoders.forEach((_, i) => {
    const line = `s${i}r0-s${i}r1-s${i}r2-`;
    const pieces: Array<[string, string]> = [];
    for (let at = 0; at < line.length; at += 8) pieces.push([at + 8 < line.length ? "P" : "F", line.slice(at, at + 8)]);
    assert.deepEqual(out[i], pieces, `stream ${i}`);
  });
  const idle = new CriLineEncoder("stdout", 16384);
  assert.equal(idle.pending, 0);
  assert.equal(idle.end().length, 0, "an encoder that never saw a byte has nothing to end");
});

test("any input, cut into reads anywhere, is logged exactly as containerd logs it", () => {
  let seed = 42;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const alphabet = ["a", "b", "\n", "\r", "\r\n", "\n\n"];
  for (let round = 0; round < 300; round++) {
    const max = [16, 17, 31, 100, 4096, 5000, 16384][random(7)]!;
    const long = random(4) === 0;
    let text = "";
    const size = long ? 20000 + random(20000) : random(200);
    while (text.length < size) text += random(3) === 0 ? alphabet[random(alphabet.length)]! : "x".repeat(1 + random(long ? 9000 : 10));
    const input = Buffer.from(text, "latin1");
    const chunks: string[] = [];
    for (let i = 0; i < input.length;) {
      const n = 1 + random(random(2) === 0 ? 8 : 40000);
      chunks.push(input.subarray(i, i + n).toString("latin1"));
      i += n;
    }
    assert.deepEqual(encodeAll(chunks, max), containerdEntries(input, max), `round ${round}, max ${max}, ${chunks.length} reads`);
  }
});

test("the log file takes batches in order and switches files between two batches on reopen", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-log-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "pods", "c.log");
  const file = new CriLogFile(path);
  await file.open();
  const e = new CriLineEncoder("stdout", 16384);
  let reopened: Promise<void> | undefined;
  for (let i = 0; i < 2000; i++) {
    // one batch at a time, as a FIFO copy writes; the reopen lands between two of them
    await file.write(e.encode(Buffer.from(`line ${i}\n`)));
    if (i === 999) {
      await rename(path, `${path}.1`);
      reopened = file.reopen();
    }
  }
  await reopened;
  await file.close();
  const numbers = async (p: string) => parse(await readFile(p)).map(([, text]) => Number(text.split(" ")[1]));
  const old = await numbers(`${path}.1`);
  const now = await numbers(path);
  assert.deepEqual([...old, ...now], Array.from({ length: 2000 }, (_, i) => i), "no line lost, repeated or reordered across the rotation");
  assert.ok(old.length > 0 && now.length > 0, `both files have lines: ${old.length} + ${now.length}`);
});

test("a log file left with a cut-short last entry (crib killed inside a write) gets its line ended before new entries", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-log-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "c.log");
  await writeFile(path, "2024-01-02T03:04:05.678000000Z stdout F whole\n2024-01-02T03:04:05.678000001Z stdout F cut sh");
  const file = new CriLogFile(path);
  await file.open();
  await file.write(new CriLineEncoder("stdout", 16384).encode(Buffer.from("next\n")));
  await file.close();
  const lines = (await readFile(path, "utf8")).split("\n");
  assert.equal(lines[1], "2024-01-02T03:04:05.678000001Z stdout F cut sh");
  assert.match(lines[2]!, / stdout F next$/);
});
