// Facts about the machine a trace was recorded on (replay warns when its CPU differs), and that
// an agent reports for its host.
import { readFileSync } from 'node:fs';
import { arch, cpus, hostname, release } from 'node:os';

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

export function hostFacts(name = hostname()): HostFacts {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: only the model, from Node.
  }
  const flags = cpuinfoField(cpuinfo, 'flags');
  return {
    hostname: name,
    kernel: release(),
    arch: arch() === 'x64' ? 'x86_64' : arch(),
    cpu: {
      model: cpuinfoField(cpuinfo, 'model name') || (cpus()[0]?.model ?? ''),
      vendor: cpuinfoField(cpuinfo, 'vendor_id'),
      flags: flags ? flags.split(/\s+/) : [],
    },
  };
}
