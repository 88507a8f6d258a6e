#!/usr/bin/env node
// tether-sidecar: parses flags and env, starts the egress proxy and admin server, exits 64 on bad configuration.

import { ConfigError, EXIT_USAGE } from '../src/config/settings.ts';
import { loadSidecarConfig, sidecarHelp } from '../src/config/sidecar.ts';
import { startSidecar, StartupError, type Sidecar } from '../src/sidecar.ts';
import { flushStdout } from '../src/telemetry/log.ts';

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
  let sidecar: Sidecar | undefined;
  const exit = (): void => void flushStdout(1000).then(() => process.exit(0));
  let stopping = false;
  // SIGTERM (the kubelet) and POST /shutdown (a Job's last step) drain; a second signal stops at once.
  const stop = (why: string): void => {
    if (!sidecar) return;
    if (stopping) {
      sidecar.log.warn({ why }, 'stopping now: not waiting for in-flight requests');
      void sidecar.close().then(exit);
      return;
    }
    stopping = true;
    sidecar.log.info({ why, graceMs: config.drainGraceMs }, 'shutting down');
    void sidecar.drain(config.drainGraceMs).then(exit);
  };
  try {
    sidecar = await startSidecar(config, { onShutdownRequest: () => stop('POST /shutdown') });
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    process.stderr.write(
      `tether-sidecar: ${err.problems.map((p, i) => (i === 0 ? p : `  ${p}`)).join('\n')}\n`,
    );
    process.exit(EXIT_USAGE);
  }
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main();
