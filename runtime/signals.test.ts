import assert from "node:assert/strict";
import { test } from "node:test";
import { criSignal, signalNumber } from "./signals.js";

test("signal names from images and the CRI enum have their Linux numbers", () => {
  assert.equal(signalNumber("SIGTERM"), 15);
  assert.equal(signalNumber("quit"), 3);
  assert.equal(signalNumber("9"), 9);
  assert.equal(signalNumber("SIGRTMIN"), 34);
  assert.equal(signalNumber("SIGRTMINPLUS3"), 37);
  assert.equal(signalNumber("SIGRTMIN+3"), 37);
  assert.equal(signalNumber("SIGRTMAXMINUS2"), 62);
  assert.equal(signalNumber("SIGRTMAX"), 64);
  assert.equal(signalNumber("SIGCLD"), 17);
  assert.equal(signalNumber("SIGWAT"), undefined);
  assert.equal(signalNumber("SIGRTMINPLUS40"), undefined);
});

test("ContainerStatus reports the signal by its CRI enum name", () => {
  assert.equal(criSignal("SIGTERM"), "SIGTERM");
  assert.equal(criSignal("QUIT"), "SIGQUIT");
  assert.equal(criSignal("2"), "SIGINT");
  assert.equal(criSignal("SIGRTMIN+3"), "SIGRTMINPLUS3");
  assert.equal(criSignal("62"), "SIGRTMAXMINUS2");
  assert.equal(criSignal("SIGIOT"), "SIGIOT");
  assert.equal(criSignal("SIGWAT"), "RUNTIME_DEFAULT");
});
