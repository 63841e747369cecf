import { hostFacts as traceHostFacts } from '../trace/host_facts.js';
import { REWIND_VERSION } from '../trace/version.js';
import type { HostFacts } from '../gen/rewind/agent/v1/agent.js';

/** Facts about this host that the server keeps (and shows in `rewind hosts`): a trace's, as the API carries them. */
export function hostFacts(hostname?: string): HostFacts {
  const f = traceHostFacts(hostname);
  return {
    hostname: f.hostname,
    kernel: f.kernel,
    arch: f.arch,
    cpuModel: f.cpu.model,
    cpuVendor: f.cpu.vendor,
    cpuFlags: f.cpu.flags,
    rewindVersion: REWIND_VERSION,
  };
}
