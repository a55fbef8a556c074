import assert from "node:assert/strict";
import { test } from "node:test";
import { loadContainerd } from "../../proto/load.js";
import { encodeWrite, HEADROOM } from "./content-write.js";

const decode = (bytes: Buffer) => loadContainerd().containerd.services.content.v1.Content.service.Write.requestDeserialize(bytes);

test("a WRITE encoded in front of its data is the WriteContentRequest containerd reads", () => {
  for (const offset of [0, 1, 127, 128, 300_000, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
    for (const length of [1, 127, 128, 512 << 10]) {
      const data = Buffer.alloc(length, offset % 251);
      const buffer = Buffer.alloc(HEADROOM + length);
      data.copy(buffer, HEADROOM);
      const request = decode(encodeWrite(buffer, offset, length));
      assert.equal(request.action, "WRITE");
      assert.equal(request.offset, String(offset), `offset ${offset}, length ${length}`);
      assert.deepEqual(request.data, data);
      assert.equal(request.ref, "");
    }
  }
});

test("the data is not copied: the message is a view of the buffer it was filled into", () => {
  const buffer = Buffer.alloc(HEADROOM + 10, 7);
  const encoded = encodeWrite(buffer, 42, 10);
  assert.equal(encoded.buffer, buffer.buffer);
  assert.equal(encoded.byteOffset + encoded.length, buffer.byteOffset + buffer.length);
});
