import fs from 'node:fs';
import os from 'node:os';
import type { HostFacts } from '../gen/rewind/agent/v1/agent.js';

export const REWIND_VERSION = '0.1.0';

/** Facts about this host that the server keeps (and shows in `rewind hosts`). */
export function hostFacts(hostname = os.hostname()): HostFacts {
  let model: string;
  let vendor = '';
  let flags: string[] = [];
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const field = (name: string): string => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
    model = field('model name');
    vendor = field('vendor_id');
    flags = field('flags').split(/\s+/).filter(Boolean);
  } catch {
    model = os.cpus()[0]?.model ?? '';
  }
  return {
    hostname,
    kernel: os.release(),
    arch: os.arch() === 'x64' ? 'x86_64' : os.arch(),
    cpuModel: model,
    cpuVendor: vendor,
    cpuFlags: flags,
    rewindVersion: REWIND_VERSION,
  };
}
