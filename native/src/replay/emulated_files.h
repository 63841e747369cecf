// Replay's stand-ins for the files the recorded tree mapped shared (record/shared_files.h): one
// memfd of the replayer's for each, which every replayed mapping of the file maps shared, so
// that what one mapping stores the others see, as they did when recorded. Its content follows
// the recording: set from the captured file at each mmap, resized and written where a recorded
// syscall changed the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/events.h"
#include "replay/trace_blobs.h"

namespace rwd {

class EmulatedFiles {
 public:
  explicit EmulatedFiles(FileMemory& memory) : memory_(memory) {}
  ~EmulatedFiles();
  EmulatedFiles(const EmulatedFiles&) = delete;
  EmulatedFiles& operator=(const EmulatedFiles&) = delete;

  // Gives file `id` the content it had when an mmap mapped it; returns the path a replayed task
  // opens to map it.
  std::string reset(uint64_t id, TraceBlobs& blobs, const std::string& blob, uint64_t size);
  // Applies what a recorded syscall did to the file it names: the bytes it wrote, its new size.
  void apply(const SyscallEvent& ev);

 private:
  int fdOf(uint64_t id);
  void resize(int fd, uint64_t size);

  FileMemory& memory_;           // counts the memfds
  std::map<uint64_t, int> fds_;  // file number in the trace -> memfd
};

}  // namespace rwd
