// Rebuilds a recorded address space inside the replay stub: unmaps everything but the stub,
// maps each recorded region at its recorded address (captured files from the trace's blobs,
// everything else from the exec snapshot) and leaves the task with the recorded registers.
#pragma once

#include <cstdint>
#include <string>

#include "core/events.h"
#include "core/task.h"
#include "replay/trace_blobs.h"

namespace rwd {

struct StubLayout {
  uint64_t gadget = 0;   // the stub's syscall instruction
  uint64_t scratch = 0;  // writable scratch memory in the stub
};

// `task` must be stopped at the exit of its execve of the stub.
StubLayout buildAddressSpace(Task& task, const ExecEvent& exec, TraceBlobs& blobs);

// Writes a NUL-terminated string into the stub's scratch memory and returns its address.
uint64_t putScratchString(Task& task, const StubLayout& stub, const std::string& s,
                          uint64_t offset = 0);

}  // namespace rwd
