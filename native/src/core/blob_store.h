// The blobs of one trace directory: content-addressed files named by their sha256
// (DIR/blobs/<sha256>). Files the recorded program maps are captured once per
// (device, inode, size, mtime).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace rwd {

struct BlobRef {
  std::string sha256;
  uint64_t size = 0;
  std::string role;  // events, file, sparse file (core/sparse_blob.h), snapshot
  std::string path;  // for files: where the program found it
};

class BlobStore {
 public:
  explicit BlobStore(const std::string& traceDir);

  std::string put(const void* data, size_t len, const std::string& role);
  // Captures the file open at `fd` (the tracer's own descriptor); `path` is for the manifest.
  // `cached`: a file captured before with the same (device, inode, size, mtime) is not read
  // again, unless its mtime was too close to that capture to tell a later change from it.
  std::string putFile(int fd, const std::string& path, bool cached = true);
  // Moves a finished file (the event stream), of that sha256 and size, into the store.
  std::string adopt(const std::string& file, const std::string& role, const std::string& sha256,
                    uint64_t size);
  std::string pathOf(const std::string& sha256) const;

  const std::vector<BlobRef>& blobs() const { return blobs_; }

 private:
  std::string commitTemp(const std::string& temp, const std::string& sha, uint64_t size,
                         const std::string& role, const std::string& path);
  std::string store(const void* data, size_t len, const std::string& role);
  std::string dir_;
  std::vector<BlobRef> blobs_;
  std::map<std::string, size_t> known_;  // sha256 -> index in blobs_
  struct Captured {
    std::string sha256;
    bool settled;  // its mtime was over a second old when it was read
  };
  std::map<std::tuple<dev_t, ino_t, off_t, int64_t>, Captured> fileCache_;
  uint64_t tempCounter_ = 0;
};

// Hex sha256 of a buffer.
std::string sha256Hex(const void* data, size_t len);

// Hex sha256 of the whole file open at `fd`; `what` names it in errors.
std::string sha256OfFile(int fd, const std::string& what);

// Whether `name` can name a blob: 64 lower-case hex digits. Names come from traces, which are
// untrusted, so anything else (a path, "..", an upper-case or short name) is refused.
bool isBlobName(const std::string& name);

}  // namespace rwd
