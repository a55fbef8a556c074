// Signal names as images (StopSignal: "SIGQUIT", "QUIT", "3", "SIGRTMIN+3") and
// the CRI's Signal enum ("SIGRTMINPLUS3") give them, and their Linux numbers.
import { constants } from "node:os";
import { Signal } from "../proto/gen/cri/runtime/v1/Signal.js";

const SIGRTMIN = 34;
const SIGRTMAX = 64;
const byName = constants.signals as Record<string, number>;
// names Node does not list
const aliases: Record<string, number> = { SIGCLD: byName["SIGCHLD"]!, SIGUNUSED: byName["SIGSYS"]! };

/** The signal's number; undefined for a name Linux does not have. */
export function signalNumber(name: string): number | undefined {
  const text = name.trim().toUpperCase();
  if (/^\d+$/.test(text)) return Number(text);
  const sig = text.startsWith("SIG") ? text : `SIG${text}`;
  const rt = /^SIGRT(MIN|MAX)(?:(PLUS|MINUS|\+|-)(\d+))?$/.exec(sig);
  if (rt) {
    const offset = Number(rt[3] ?? 0) * (rt[2] === "PLUS" || rt[2] === "+" ? 1 : rt[2] ? -1 : 0);
    const n = (rt[1] === "MIN" ? SIGRTMIN : SIGRTMAX) + offset;
    return n >= SIGRTMIN && n <= SIGRTMAX ? n : undefined;
  }
  return byName[sig] ?? aliases[sig];
}

const criNames = new Set<string>(Object.values(Signal));

/** The CRI enum name of the signal `name` stands for ("RUNTIME_DEFAULT" when the enum has none). */
export function criSignal(name: string): keyof typeof Signal {
  const n = signalNumber(name);
  if (n === undefined) return "RUNTIME_DEFAULT";
  let candidate: string;
  if (n >= SIGRTMIN && n <= SIGRTMAX) {
    candidate = n === SIGRTMIN ? "SIGRTMIN" : n === SIGRTMAX ? "SIGRTMAX" : n - SIGRTMIN <= 15 ? `SIGRTMINPLUS${n - SIGRTMIN}` : `SIGRTMAXMINUS${SIGRTMAX - n}`;
  } else {
    candidate = Object.entries(byName).find(([, v]) => v === n)?.[0] ?? "";
    const upper = name.trim().toUpperCase();
    const asGiven = upper.startsWith("SIG") ? upper : `SIG${upper}`;
    if (criNames.has(asGiven) && signalNumber(asGiven) === n) candidate = asGiven; // SIGIOT stays SIGIOT
  }
  return (criNames.has(candidate) ? candidate : "RUNTIME_DEFAULT") as keyof typeof Signal;
}
