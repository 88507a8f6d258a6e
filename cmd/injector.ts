#!/usr/bin/env node
// tether-injector: parses flags and env, serves the mutating admission webhook over HTTPS, exits 64 on bad configuration.

import { injectOptionsFrom, injectorHelp, loadInjectorConfig } from '../src/config/injector.ts';
import { ConfigError, EXIT_USAGE } from '../src/config/settings.ts';
import { InjectorStartupError, startInjectorServer } from '../src/inject/server.ts';
import { createLogger } from '../src/telemetry/log.ts';

async function main(): Promise<void> {
  let config;
  try {
    const parsed = loadInjectorConfig(process.argv.slice(2));
    if (parsed.help) {
      process.stdout.write(injectorHelp() + '\n');
      return;
    }
    config = parsed.values;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(
      `tether-injector: invalid configuration:\n${err.problems.map((p) => `  - ${p}`).join('\n')}\nRun with --help for the options.\n`,
    );
    process.exit(EXIT_USAGE);
  }
  const log = createLogger(config.logLevel, 'tether-injector');
  let server;
  try {
    server = await startInjectorServer({
      listen: config.listen,
      certFile: config.tlsCertFile,
      keyFile: config.tlsKeyFile,
      certReloadMs: config.certReloadMs,
      inject: injectOptionsFrom(config),
      log,
    });
  } catch (err) {
    if (!(err instanceof InjectorStartupError)) throw err;
    process.stderr.write(`tether-injector: ${err.message}\n`);
    process.exit(EXIT_USAGE);
  }
  const stop = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

await main();
