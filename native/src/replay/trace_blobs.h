// The blobs of a trace being replayed. A trace is untrusted input: every blob name it holds is
// checked (64 hex digits, so it cannot leave the blob directory), a blob is opened only as a
// regular file beneath that directory and never through a link, and its content must hash to
// its name before replay uses it.
#pragma once

#include <fcntl.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "replay/file_memory.h"

namespace rwd {

// Sizes and offsets of files come from the trace, which is untrusted: a file larger than this is
// a malformed trace, not something to allocate.
constexpr uint64_t kMaxFileSize = uint64_t(1) << 40;

class TraceBlobs {
 public:
  // `memory` counts the memfds that hold the sparse files.
  TraceBlobs(const std::string& traceDir, FileMemory& memory);
  ~TraceBlobs();
  TraceBlobs(const TraceBlobs&) = delete;
  TraceBlobs& operator=(const TraceBlobs&) = delete;

  // The content of a verified blob.
  std::vector<uint8_t> read(const std::string& name);
  // The path of a verified file blob, for the replayed task to open with noFollow(name): the
  // blob itself, or a memfd of the replayer's that holds the file a sparse blob stands for.
  std::string pathOf(const std::string& name);
  int noFollow(const std::string& name) const { return decoded_.count(name) ? 0 : O_NOFOLLOW; }
  // Writes the file a verified file blob stands for into `out`, an empty memfd counted by the
  // FileMemory.
  void copyInto(const std::string& name, int out);

 private:
  // Opens and verifies the blob, returning its descriptor (the caller closes it).
  int openVerified(const std::string& name);

  std::string dir_;
  FileMemory& memory_;
  int dirFd_ = -1;
  std::set<std::string> verified_;
  std::map<std::string, int> decoded_;  // sparse blob -> memfd
};

}  // namespace rwd
