// Files the recorded tree maps shared (MAP_SHARED of a regular file, /dev/shm, a memfd). Every
// mapping of one shows the same pages, and so does every change made to the file by a syscall of
// any process of the tree. Replay keeps one emulated file for each (replay/emulated_files.h),
// so the recorder notes, for each syscall that maps one or changes one, the file's number, its
// size after the syscall and the bytes the syscall wrote into it (docs/memory.md).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <utility>

#include "core/events.h"
#include "core/task.h"

namespace rwd {

class SharedFiles {
 public:
  // The number of the file open at `tracerFd` (the recorder's own descriptor of it), which a
  // MAP_SHARED mmap maps: a new one the first time.
  uint64_t mapped(int tracerFd);
  // The same for a file known by its device and inode (a SysV segment, as /proc/PID/maps names
  // it).
  uint64_t mapped(dev_t dev, ino_t inode);
  // After a syscall of `task` returned `result`: when it changed a file mapped shared (a write
  // through any of its descriptors, ftruncate, fallocate), notes the change in `s`. Changes that
  // cannot be told as bytes at an offset stop recording with a message naming the syscall.
  void captureChange(const Task& task, long nr, int64_t result, SyscallEvent& s) const;
  bool empty() const { return ids_.empty(); }

 private:
  std::map<std::pair<dev_t, ino_t>, uint64_t> ids_;
};

}  // namespace rwd
