// The sidecar's settings: every flag, its environment variable, default and reason; the only reader of process.env for tether-sidecar.

import { LOG_LEVELS } from '../telemetry/log.ts';
import {
  hostPort,
  isLoopback,
  oneOf,
  parseSettings,
  positiveMs,
  text,
  helpText,
  type HostPort,
  type Setting,
} from './settings.ts';

export const SIDECAR_SETTINGS = {
  policyFile: {
    flag: 'policy-file',
    env: 'TETHER_POLICY_FILE',
    default: undefined as string | undefined,
    help: 'TrafficPolicy YAML to enforce and watch for edits; without it the embedded default policy applies',
    parse: text,
  },
  listen: {
    flag: 'listen',
    env: 'TETHER_LISTEN',
    default: { host: '127.0.0.1', port: 15001 },
    help: 'egress proxy address; loopback only, so only processes in the pod can use it',
    parse: (raw: string): HostPort | { error: string } => {
      const hp = hostPort(raw);
      if ('error' in hp) return hp;
      return isLoopback(hp.host)
        ? hp
        : {
            error: `${hp.host} is not a loopback address: the egress proxy must only be reachable from inside the pod`,
          };
    },
  },
  adminListen: {
    flag: 'admin-listen',
    env: 'TETHER_ADMIN_LISTEN',
    default: { host: '0.0.0.0', port: 15020 },
    help: 'admin address for /livez, /readyz, /metrics (the kubelet probes it from outside the pod)',
    parse: hostPort,
  },
  logLevel: {
    flag: 'log-level',
    env: 'TETHER_LOG_LEVEL',
    default: 'info',
    help: `log level: ${LOG_LEVELS.join(', ')}`,
    parse: oneOf(LOG_LEVELS),
  },
  policyPollMs: {
    flag: 'policy-poll',
    env: 'TETHER_POLICY_POLL',
    default: 500,
    help: 'how often the policy file is checked for edits; 500ms applies an edit well within 2s',
    parse: positiveMs,
  },
} satisfies Record<string, Setting<unknown>>;

export const SIDECAR_USAGE = `tether-sidecar: Tether's egress proxy and admin server.

Usage: tether-sidecar [options]
       npm start -- [options]`;

export type SidecarConfig = ReturnType<typeof loadSidecarConfig>['values'];

export function loadSidecarConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
) {
  return parseSettings(SIDECAR_SETTINGS, argv, env);
}

export const sidecarHelp = (): string => helpText(SIDECAR_USAGE, SIDECAR_SETTINGS);
