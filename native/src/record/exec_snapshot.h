// What the recorder stores at each exec: the new address space (layout, file mappings as
// captured blobs, everything else as a snapshot blob) and the registers, so replay can rebuild
// the process without the recording host's files.
#pragma once

#include <cstdint>
#include <functional>

#include "core/blob_store.h"
#include "core/events.h"
#include "core/remote_syscalls.h"
#include "core/task.h"

namespace rwd {

// Patches the vDSO, captures the address space of a task stopped right after exec, and
// reserves the replay stub's range in it; then `inject` may inject syscalls of its own. `taker`
// takes the signals that come meanwhile. Returns the Exec event.
ExecEvent captureExec(Task& task, BlobStore& blobs, const std::string& exe,
                      const RemoteSyscalls::SignalTaker& taker,
                      const std::function<void(RemoteSyscalls&)>& inject = nullptr);

// Opens a file the way the traced process sees it (through /proc), for capture.
int openTraceeFile(const std::string& procPath);

}  // namespace rwd
