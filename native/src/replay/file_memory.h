// The memory held by the files replay stands in for: the memfds that hold a captured sparse file
// (trace_blobs.h) or a file the recorded tree mapped shared (emulated_files.h). A trace decides
// what they hold (many files may be copied from one blob), and no rlimit counts their pages
// (RLIMIT_DATA counts private memory, RLIMIT_AS what a process maps, RLIMIT_FSIZE how long one
// file is, holes included), so replay keeps the account itself and stops before the files hold
// more than the process's RLIMIT_DATA: in a sandbox, the worker's memory bound (docs/security.md).
#pragma once

#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace rwd {

class FileMemory {
 public:
  FileMemory() {
    rlimit data;
    bound_ = getrlimit(RLIMIT_DATA, &data) == 0 ? uint64_t(data.rlim_cur) : RLIM_INFINITY;
  }
  FileMemory(const FileMemory&) = delete;
  FileMemory& operator=(const FileMemory&) = delete;

  // Counts what memfd `fd` holds from now on (its owner closes it).
  void add(int fd) { fds_.push_back(fd); }
  // Before up to `bytes` more are written into the files: fails with a clear error when they
  // could then hold more than the bound.
  void reserve(uint64_t bytes) const {
    if (bound_ == RLIM_INFINITY) return;
    uint64_t held = 0;
    for (int fd : fds_) {
      struct stat st;
      if (fstat(fd, &st) != 0) failErrno("stat a file replay stands in for");
      held += uint64_t(st.st_blocks) * 512;
    }
    if (held > bound_ || bytes > bound_ - held) {
      fail(ErrorCode::System, "the files replay stands in for would hold more than " +
                                  std::to_string(bound_) + " bytes, this replay's memory bound (" +
                                  std::to_string(held) + " held, up to " + std::to_string(bytes) +
                                  " more due)");
    }
  }

 private:
  uint64_t bound_;
  std::vector<int> fds_;
};

}  // namespace rwd
