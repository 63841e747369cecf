import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../trace/user_error.js';

/** How a client reaches the server. Flags win over REWIND_* variables, which win over the config file. */
export interface ClientConfig {
  /** host:port, or several IP:port separated by commas: servers of one cluster, tried in turn. */
  server: string;
  token?: string;
  /** Use TLS (set by a "https://" or "tls://" server, --tls, or a CA file). */
  tls: boolean;
  /** PEM file of the CA that signed the server's certificate (default: system roots). */
  caFile?: string;
}

export interface ConfigFile {
  server?: string;
  token?: string;
  tls?: boolean;
  ca?: string;
}

export interface ClientFlags {
  server?: string;
  token?: string;
  tls?: boolean;
  ca?: string;
}

export const DEFAULT_SERVER = '127.0.0.1:7777';

export function configPath(): string {
  if (process.env.REWIND_CONFIG) return process.env.REWIND_CONFIG;
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'rewind', 'config.json');
}

export function readConfigFile(file = configPath()): ConfigFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    const o = v as Record<string, unknown>;
    const out: ConfigFile = {};
    if (typeof o.server === 'string') out.server = o.server;
    if (typeof o.token === 'string') out.token = o.token;
    if (typeof o.tls === 'boolean') out.tls = o.tls;
    if (typeof o.ca === 'string') out.ca = o.ca;
    return out;
  } catch (err) {
    throw new UserError(`bad config file ${file}: ${(err as Error).message}`);
  }
}

/** Resolves the connection settings from flags, environment and config file, in that order. */
export function resolveConfig(flags: ClientFlags): ClientConfig {
  const file = readConfigFile();
  let server = flags.server || process.env.REWIND_SERVER || file.server || DEFAULT_SERVER;
  const token = flags.token || process.env.REWIND_TOKEN || file.token || undefined;
  const caFile = flags.ca || process.env.REWIND_CA || file.ca || undefined;
  let tls = Boolean(flags.tls || file.tls || caFile || process.env.REWIND_TLS === '1');
  const m = /^(https|tls|grpcs|http|grpc):\/\/(.*?)\/?$/.exec(server);
  if (m) {
    server = m[2]!;
    if (m[1] === 'https' || m[1] === 'tls' || m[1] === 'grpcs') tls = true;
  }
  server = server
    .split(',')
    .map((s) => s.trim())
    .map((s) => (/:\d+$/.test(s) ? s : `${s}:${tls ? 443 : 7777}`))
    .join(',');
  return { server, token, tls, caFile };
}
