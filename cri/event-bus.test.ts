import assert from "node:assert/strict";
import { test } from "node:test";
import { EventBus } from "./event-bus.js";

test("every subscriber gets every event, in order", async () => {
  const bus = new EventBus<number>(10);
  const a = bus.subscribe();
  const b = bus.subscribe();
  for (const n of [1, 2, 3]) bus.publish(n);
  const signal = new AbortController().signal;
  assert.deepEqual([await a.next(signal), await a.next(signal), await a.next(signal)], [1, 2, 3]);
  assert.deepEqual([await b.next(signal), await b.next(signal), await b.next(signal)], [1, 2, 3]);
  assert.equal(bus.clients, 2);
});

test("a subscriber that falls `limit` events behind is dropped; publishing never waits and others go on", async () => {
  const bus = new EventBus<number>(3);
  const slow = bus.subscribe();
  const fast = bus.subscribe();
  const signal = new AbortController().signal;
  const got: number[] = [];
  for (let n = 0; n < 10; n++) {
    bus.publish(n);
    got.push((await fast.next(signal))!);
  }
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(slow.overflowed, true);
  assert.equal(await slow.next(signal), undefined);
  await slow.ended;
  assert.equal(bus.clients, 1);
});

test("a waiting reader wakes on a new event, on close and on abort", async () => {
  const bus = new EventBus<string>();
  const s = bus.subscribe();
  const controller = new AbortController();
  const waiting = s.next(controller.signal);
  bus.publish("x");
  assert.equal(await waiting, "x");
  const aborted = s.next(controller.signal);
  controller.abort();
  assert.equal(await aborted, undefined);
  const closed = s.next(new AbortController().signal);
  bus.close();
  assert.equal(await closed, undefined);
  assert.equal(bus.clients, 0);
});
