// `tetherctl inject` / `tetherctl uninject`: offline (un)injection of multi-document YAML from a file or stdin, with the webhook's own mutation.

import { readFile } from 'node:fs/promises';
import { INJECTION_SETTINGS, injectOptionsFrom } from '../config/injector.ts';
import { ConfigError, EXIT_USAGE, helpText, parseSettings, text, type Setting } from '../config/settings.ts';
import { transformDocuments, type Direction } from '../inject/documents.ts';
import type { InjectOptions } from '../inject/options.ts';
import { InjectError } from '../inject/pod.ts';

const FILE_SETTING = {
  filename: {
    flag: 'filename',
    default: undefined as string | undefined,
    help: 'YAML to read (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Lists); "-" reads stdin',
    parse: text,
  },
} satisfies Record<string, Setting<unknown>>;

const INJECT_SETTINGS = { ...FILE_SETTING, ...INJECTION_SETTINGS };

export const INJECT_USAGE = `tetherctl inject: adds the Tether sidecar to every pod template in the YAML, as the webhook would, and prints the result.
Templates with tether.io/inject: "false" are left alone. The tether.io/* pod annotations apply as in the cluster.

Usage: tetherctl inject -f FILE|- [options]
  e.g. kubectl get deploy web -o yaml | tetherctl inject -f - | kubectl apply -f -`;

export const UNINJECT_USAGE = `tetherctl uninject: removes what tetherctl inject (or the webhook) added: containers, env, the tether.io/injected annotation.

Usage: tetherctl uninject -f FILE|-`;

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  readStdin: () => Promise<string>;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks).toString('utf8');
}

export const processIo: CliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  readStdin: () => readAll(process.stdin),
};

/** `-f X` is kubectl's spelling; the settings table knows only long flags. */
const normalize = (args: readonly string[]): string[] =>
  args.map((a) => (a === '-f' ? '--filename' : a.startsWith('-f=') ? `--filename=${a.slice(3)}` : a));

/** Exit codes: 0 done, 1 a document could not be (un)injected, 64 bad usage. */
export async function runInject(
  direction: Direction,
  args: readonly string[],
  io: CliIo = processIo,
): Promise<number> {
  const usage = direction === 'inject' ? INJECT_USAGE : UNINJECT_USAGE;
  const table = direction === 'inject' ? INJECT_SETTINGS : FILE_SETTING;
  let parsed: { help: boolean; file: string | undefined; opts: InjectOptions };
  try {
    // tetherctl reads no environment: what it injects depends on its flags alone. uninject takes only -f,
    // so an injection flag given to it is an error, not silently ignored.
    if (direction === 'inject') {
      const p = parseSettings(INJECT_SETTINGS, normalize(args), {});
      parsed = { help: p.help, file: p.values.filename, opts: injectOptionsFrom(p.values) };
    } else {
      const p = parseSettings(FILE_SETTING, normalize(args), {});
      parsed = {
        help: p.help,
        file: p.values.filename,
        opts: injectOptionsFrom(parseSettings(INJECTION_SETTINGS, [], {}).values),
      };
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`tetherctl ${direction}: ${err.problems.join('; ')}\n\n${usage}\n`);
    return EXIT_USAGE;
  }
  if (parsed.help) {
    io.stdout(helpText(usage, table) + '\n');
    return 0;
  }
  const { file, opts } = parsed;
  if (file === undefined) {
    io.stderr(`tetherctl ${direction}: -f FILE or -f - (stdin) is required\n\n${usage}\n`);
    return EXIT_USAGE;
  }
  let input: string;
  try {
    input = file === '-' ? await io.readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    io.stderr(
      `tetherctl ${direction}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}\n`,
    );
    return 1;
  }
  try {
    const r = transformDocuments(input, direction, opts);
    io.stdout(r.text);
    for (const n of r.notes) io.stderr(`tetherctl ${direction}: ${n}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof InjectError)) throw err;
    for (const p of err.problems) io.stderr(`tetherctl ${direction}: ${p}\n`);
    return 1;
  }
}
