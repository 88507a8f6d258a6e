#!/usr/bin/env node
// tether-sidecar: parses flags and env, starts the egress proxy and admin server, exits 64 on bad configuration.

import { ConfigError, EXIT_USAGE } from '../src/config/settings.ts';
import { loadSidecarConfig, sidecarHelp } from '../src/config/sidecar.ts';
import { startSidecar, StartupError } from '../src/sidecar.ts';

async function main(): Promise<void> {
  let config;
  try {
    const parsed = loadSidecarConfig(process.argv.slice(2));
    if (parsed.help) {
      process.stdout.write(sidecarHelp() + '\n');
      return;
    }
    config = parsed.values;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(
      `tether-sidecar: invalid configuration:\n${err.problems.map((p) => `  - ${p}`).join('\n')}\nRun with --help for the options.\n`,
    );
    process.exit(EXIT_USAGE);
  }
  let sidecar;
  try {
    sidecar = await startSidecar(config);
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    process.stderr.write(
      `tether-sidecar: ${err.problems.map((p, i) => (i === 0 ? p : `  ${p}`)).join('\n')}\n`,
    );
    process.exit(EXIT_USAGE);
  }
  const stop = (signal: string): void => {
    sidecar.log.info({ signal }, 'shutting down');
    void sidecar.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

await main();
