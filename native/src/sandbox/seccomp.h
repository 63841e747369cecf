// Defence in depth for a confined worker: system calls that neither the worker nor the replayed
// program ever needs are refused by the kernel, whatever a replayer bug lets through.
#pragma once

namespace rwd::sandbox {

// Installs the filter on every thread of the process (and so on every process started later):
// no new sockets, no mounts or namespace changes (the way out of a confined view), and none of
// the rarely needed kernel interfaces that widen the attack surface (bpf, io_uring, userfaultfd,
// keyrings, perf events); only x86-64 system calls. Emulated system calls of the replayed
// program never reach the filter (PTRACE_SYSEMU skips them before seccomp runs); a refused one
// fails with EPERM (ENOSYS for another ABI). Throws rwd::Error on failure.
void installSeccompFilter();

}  // namespace rwd::sandbox
