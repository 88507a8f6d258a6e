#!/usr/bin/env node
// tetherctl: the user's command line — validate policies, inject sidecars offline, print the version.

import { readFileSync } from 'node:fs';
import { EXIT_USAGE } from '../src/config/settings.ts';
import { validateFiles } from '../src/cli/validate.ts';
import { runInject } from '../src/cli/inject.ts';

const USAGE = `tetherctl: Tether's command line.

Usage:
  tetherctl validate FILE...   check TrafficPolicy files or ConfigMaps holding policy.yaml
                               (exit 0 valid, warnings allowed; 1 invalid)
  tetherctl inject -f FILE|-   add the sidecar to the pod templates in YAML, as the webhook does
                               (stdout; --help lists the injection options)
  tetherctl uninject -f FILE|- remove what inject added
  tetherctl version            print the version
  tetherctl --help             show this help`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  validate: async (args) => {
    if (args.length === 0 || args.includes('--help')) {
      process.stdout.write('Usage: tetherctl validate FILE...\n');
      return args.length === 0 ? EXIT_USAGE : 0;
    }
    const r = await validateFiles(args);
    for (const line of r.out) process.stdout.write(line + '\n');
    return r.code;
  },
  inject: (args) => runInject('inject', args),
  uninject: (args) => runInject('uninject', args),
  version: async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    process.stdout.write(`tetherctl ${pkg.version}\n`);
    return 0;
  },
};

const [name, ...rest] = process.argv.slice(2);
if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
  process.stdout.write(USAGE + '\n');
  process.exit(name === undefined ? EXIT_USAGE : 0);
}
const command = commands[name];
if (!command) {
  process.stderr.write(`tetherctl: unknown command "${name}"\n\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}
process.exit(await command(rest));
