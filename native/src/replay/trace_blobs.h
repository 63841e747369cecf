// The blobs of a trace being replayed. A trace is untrusted input: every blob name it holds is
// checked (64 hex digits, so it cannot leave the blob directory), a blob is opened only as a
// regular file beneath that directory and never through a link, and its content must hash to
// its name before replay uses it.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace rwd {

class TraceBlobs {
 public:
  explicit TraceBlobs(const std::string& traceDir);
  ~TraceBlobs();
  TraceBlobs(const TraceBlobs&) = delete;
  TraceBlobs& operator=(const TraceBlobs&) = delete;

  // The content of a verified blob.
  std::vector<uint8_t> read(const std::string& name);
  // The path of a verified blob, for the replayed task to open (with O_NOFOLLOW).
  std::string pathOf(const std::string& name);

 private:
  // Opens and verifies the blob, returning its descriptor (the caller closes it).
  int openVerified(const std::string& name);

  std::string dir_;
  int dirFd_ = -1;
  std::set<std::string> verified_;
};

}  // namespace rwd
