// Facts about the machine a trace was recorded on: replay warns when its CPU differs.
import { readFileSync } from 'node:fs';
import { arch, hostname, release } from 'node:os';

export interface HostFacts {
  hostname: string;
  kernel: string;
  arch: string;
  cpu: { model: string; vendor: string; flags: string[] };
}

function cpuinfoField(cpuinfo: string, field: string): string {
  const match = new RegExp(`^${field}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo);
  return match?.[1]?.trim() ?? '';
}

export function hostFacts(): HostFacts {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: the fields stay empty.
  }
  const flags = cpuinfoField(cpuinfo, 'flags');
  return {
    hostname: hostname(),
    kernel: release(),
    arch: arch() === 'x64' ? 'x86_64' : arch(),
    cpu: {
      model: cpuinfoField(cpuinfo, 'model name'),
      vendor: cpuinfoField(cpuinfo, 'vendor_id'),
      flags: flags ? flags.split(/\s+/) : [],
    },
  };
}
