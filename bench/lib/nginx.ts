// The nginx arm: finds Debian's nginx (or installs nginx-light when asked and allowed), writes a one-worker reverse-proxy config under a temp prefix, and runs it in the foreground.

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  childrenOf,
  findExecutable,
  tailOf,
  spawnPinned,
  waitForPort,
  type Pinning,
  type Spawned,
} from './proc.ts';

export interface NginxFound {
  path: string;
  version: string;
}

export type NginxLookup = { found: NginxFound } | { missing: string };

const CANDIDATES = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];

function version(path: string): string | undefined {
  const r = spawnSync(path, ['-v'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return /nginx version: (\S+)/.exec(`${r.stderr}${r.stdout}`)?.[1];
}

/**
 * `explicit` is the --nginx flag (a path, checked as given). `install` runs apt-get when nginx is
 * absent: only as root, because the bench must never ask for a password halfway through.
 */
export function findNginx(
  explicit: string | undefined,
  install: boolean,
  log: (s: string) => void,
): NginxLookup {
  if (explicit !== undefined) {
    const v = version(explicit);
    return v
      ? { found: { path: explicit, version: v } }
      : { missing: `--nginx ${explicit} is not a runnable nginx` };
  }
  let path = findExecutable('nginx', CANDIDATES);
  if (!path && install) {
    if (process.getuid?.() !== 0)
      return { missing: 'nginx not found, and --install needs root (apt-get install nginx-light)' };
    log('nginx not found: installing Debian nginx-light (--install)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nginx-light'], {
      stdio: 'inherit',
      env,
    });
    if (r.status !== 0) return { missing: 'nginx not found and `apt-get install nginx-light` failed' };
    path = findExecutable('nginx', CANDIDATES);
  }
  if (!path)
    return {
      missing:
        'nginx not found (looked on PATH and in /usr/sbin): install nginx-light, or run `npm run bench -- --install` as root',
    };
  const v = version(path);
  return v ? { found: { path, version: v } } : { missing: `${path} -v failed` };
}

/**
 * One worker, upstream keep-alive, no access log: nginx at its cheapest as a reverse proxy,
 * which is the fair comparison for a sidecar's data path. Temp paths live under the prefix so
 * it runs as any user; as root nginx would drop its worker to `nobody`, so `user` names root
 * to keep the prefix readable without touching permissions.
 */
export function nginxConfig(dir: string, listenPort: number, upstreamPort: number, asRoot: boolean): string {
  return `${asRoot ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'tmp/body')};
  proxy_temp_path ${join(dir, 'tmp/proxy')};
  fastcgi_temp_path ${join(dir, 'tmp/fastcgi')};
  uwsgi_temp_path ${join(dir, 'tmp/uwsgi')};
  scgi_temp_path ${join(dir, 'tmp/scgi')};
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${listenPort} reuseport backlog=4096;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

export interface RunningNginx {
  proc: Spawned;
  startupMs: number;
  /** Master and worker: both count for CPU and RSS. */
  pids: () => number[];
}

export async function startNginx(
  found: NginxFound,
  pin: Pinning,
  dir: string,
  listenPort: number,
  upstreamPort: number,
): Promise<RunningNginx> {
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, listenPort, upstreamPort, process.getuid?.() === 0));
  const t0 = performance.now();
  const proc = spawnPinned(
    pin,
    pin.proxyCore,
    found.path,
    ['-e', join(dir, 'error.log'), '-p', dir, '-c', conf],
    join(dir, 'nginx.out'),
  );
  try {
    await waitForPort(listenPort, 5000, 'nginx', proc.alive);
  } catch (err) {
    await proc.stop();
    throw new Error(`${(err as Error).message}; its log:\n${tailOf(join(dir, 'error.log'))}`, { cause: err });
  }
  return { proc, startupMs: performance.now() - t0, pids: () => [proc.pid, ...childrenOf(proc.pid)] };
}
