// The sandbox replay and debug workers run in (docs/security.md, "Replay workers are a
// sandbox"). Two steps: the launcher (rewind-sandbox, launcher.cc) starts the worker in new
// namespaces with bounded resources; the worker, once it has loaded everything it needs, calls
// confine() to give up every file but its trace and the replay stub.
#pragma once

#include <string>

namespace rwd::sandbox {

// Set by the launcher in the worker's environment: the trace directory it was started for.
// A worker without it is not sandboxed (a local `rewind replay`), and confine() does nothing.
constexpr const char* kTraceEnv = "REWIND_SANDBOX_TRACE";

// The file-size bound (RLIMIT_FSIZE) after confine(), when nothing is writable but the memfds
// replay stands in for files with: as long as a file of a trace may be (kMaxFileSize,
// replay/trace_blobs.h), holes included; what they hold is bounded by replay/file_memory.h.
// Before confine() the launcher's --file-size applies.
constexpr unsigned long long kConfinedFileSize = 1ull << 40;

// Makes `traceDir` (read-only), `stubPath` (read-only) and a /proc of the sandbox's own
// processes the whole file system of this process, its threads and what it starts later; bounds
// the address space of every process it forks from now on (the replayed program) by the
// worker's own memory bound; and installs a seccomp filter (seccomp.h) on every thread. Both
// paths are absolute and keep their names. Lifts the file-size bound to kConfinedFileSize. Returns
// false, having done nothing, outside a sandbox; throws rwd::Error when confinement fails (the
// worker must not go on).
bool confine(const std::string& traceDir, const std::string& stubPath);

}  // namespace rwd::sandbox
