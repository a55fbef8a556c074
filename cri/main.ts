#!/usr/bin/env node
// The crib command: `crib [serve]`, `crib config default`, `crib version`,
// and the node commands `crib doctor`, `crib bootstrap`, `crib wait-ready`.
import { Command, Option } from "commander";
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig, renderDefaultConfig, type Config, type LogLevel } from "./config.js";
import { registerNodeCommands } from "./node-commands.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
export const VERSION = pkg.version;
const DEFAULT_CONFIG = "/etc/crib/config.toml";

interface ServeFlags {
  config?: string;
  listen?: string;
  containerdAddress?: string;
  containerdNamespace?: string;
  logLevel?: LogLevel;
  root?: string;
  state?: string;
}

async function configFromFlags(flags: ServeFlags): Promise<Config> {
  const config = await loadConfig(flags.config ?? DEFAULT_CONFIG, { required: flags.config !== undefined });
  if (flags.listen) config.listen = flags.listen;
  if (flags.containerdAddress) config.containerd.address = flags.containerdAddress;
  if (flags.containerdNamespace) config.containerd.namespace = flags.containerdNamespace;
  if (flags.logLevel) config.log_level = flags.logLevel;
  if (flags.root) config.root = flags.root;
  if (flags.state) config.state = flags.state;
  return config;
}

async function serveCommand(flags: ServeFlags): Promise<void> {
  let config: Config;
  try {
    config = await configFromFlags(flags);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`crib: bad configuration: ${err.message}\n`);
    process.exit(1);
  }
  const { serve } = await import("./serve.js");
  await serve(config, VERSION);
}

function withServeFlags(cmd: Command): Command {
  return cmd
    .option("--config <file>", `configuration file (default ${DEFAULT_CONFIG}, used when present)`)
    .option("--listen <path>", "CRI unix socket path")
    .option("--containerd-address <path>", "containerd socket to use instead of starting one")
    .option("--containerd-namespace <name>", "containerd namespace for crib's objects")
    .addOption(new Option("--log-level <level>", "log level").choices(["trace", "debug", "info", "warn", "error", "fatal"]))
    .option("--root <dir>", "persistent state directory")
    .option("--state <dir>", "runtime state directory");
}

const program = new Command("crib").description("crib: a Kubernetes CRI runtime on containerd and runc").version(VERSION, "--version").enablePositionalOptions();
withServeFlags(program).action((flags: ServeFlags) => serveCommand(flags));
withServeFlags(program.command("serve").description("run the CRI daemon (the default)")).action((flags: ServeFlags) => serveCommand(flags));
program.command("version").description("print crib's version and the CRI API version").action(() => {
  process.stdout.write(`crib ${VERSION}\nCRI API v1\n`);
});
program.command("config").description("configuration helpers")
  .command("default").description("print the complete default configuration")
  .action(() => { process.stdout.write(renderDefaultConfig()); });
registerNodeCommands(program, { withConfigFlags: withServeFlags, configFrom: configFromFlags, version: VERSION });

await program.parseAsync(process.argv);
