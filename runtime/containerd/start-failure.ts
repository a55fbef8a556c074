// What runc's words, as containerd passes them on from tasks.Create/Start or an
// exec's Start, say about a process that could not start: its program is not
// there, it cannot be executed, or the process ended before it started (it was
// killed: most often by a memory limit too low for runc's own init), or its
// memory limit is below what runc's init already uses.
export type StartFailure =
  | { kind: "not found"; program: string }
  | { kind: "not executable"; program: string }
  | { kind: "ended before start" }
  | { kind: "memory limit below usage"; limit: number; usage: number };

export function startFailure(err: unknown): StartFailure | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (/cannot start a stopped process/.test(message)) return { kind: "ended before start" };
  // runc sets the limit once its init is in the cgroup: a limit under what that init already uses
  const memory = /unable to set memory limit to (\d+) \(current usage: (\d+)/.exec(message);
  if (memory) return { kind: "memory limit below usage", limit: Number(memory[1]), usage: Number(memory[2]) };
  if (!/exec failed|unable to start container process/.test(message)) return undefined;
  // runc: `exec: "<program>": executable file not found in $PATH` or `exec: "<program>": stat <program>: no such file or directory`
  const exec = /exec: ("(?:[^"\\]|\\.)*"): (.*)$/s.exec(message);
  if (!exec) return undefined;
  let program: string;
  try { program = JSON.parse(exec[1]!) as string; } catch { program = exec[1]!.slice(1, -1); }
  const why = exec[2]!;
  if (/^(executable file not found|stat .*no such file or directory|no such file or directory)/s.test(why)) return { kind: "not found", program };
  if (/^(permission denied|exec format error|is a directory)/.test(why)) return { kind: "not executable", program };
  return undefined;
}
