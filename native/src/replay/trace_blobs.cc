#include "replay/trace_blobs.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/blob_store.h"
#include "core/error.h"
#include "core/sparse_blob.h"

namespace rwd {

TraceBlobs::TraceBlobs(const std::string& traceDir, FileMemory& memory)
    : dir_(traceDir + "/blobs"), memory_(memory) {
  dirFd_ = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirFd_ < 0) fail(ErrorCode::BadTrace, "the trace has no blob directory (" + dir_ + ")");
}

TraceBlobs::~TraceBlobs() {
  close(dirFd_);
  for (const auto& [name, fd] : decoded_) close(fd);
}

int TraceBlobs::openVerified(const std::string& name) {
  if (!isBlobName(name)) {
    fail(ErrorCode::BadTrace, "the trace names an invalid blob \"" + name.substr(0, 80) +
                                  "\" (a blob name is 64 hex digits)");
  }
  int fd = openat(dirFd_, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ELOOP) fail(ErrorCode::BadTrace, "blob " + name + " is a link, not a blob");
    fail(ErrorCode::BadTrace, "the trace is missing blob " + name);
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    fail(ErrorCode::BadTrace, "blob " + name + " is not a regular file");
  }
  if (!verified_.count(name)) {
    std::string actual;
    try {
      actual = sha256OfFile(fd, "blob " + name);
    } catch (...) {
      close(fd);
      throw;
    }
    if (actual != name) {
      close(fd);
      fail(ErrorCode::BadTrace, "blob " + name + " is damaged: its content hashes to " + actual);
    }
    verified_.insert(name);
  }
  return fd;
}

std::vector<uint8_t> TraceBlobs::read(const std::string& name) {
  int fd = openVerified(name);
  std::vector<uint8_t> data;
  uint8_t buf[1 << 16];
  off_t at = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      if (n < 0) fail(ErrorCode::System, "read blob " + name);
      return data;
    }
    data.insert(data.end(), buf, buf + n);
    at += n;
  }
}

std::string TraceBlobs::pathOf(const std::string& name) {
  auto it = decoded_.find(name);
  if (it == decoded_.end()) {
    int fd = openVerified(name);
    char head[sizeof kSparseMagic] = {};
    bool sparse = pread(fd, head, sizeof head, 0) == ssize_t(sizeof head) &&
                  isSparseEncoding(head, sizeof head);
    close(fd);
    if (!sparse) return dir_ + "/" + name;
    int out = memfd_create("rewind-captured-file", MFD_CLOEXEC);
    if (out < 0) failErrno("memfd_create for a captured file");
    it = decoded_.emplace(name, out).first;
    memory_.add(out);
    copyInto(name, out);
  }
  return "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(it->second);
}

void TraceBlobs::copyInto(const std::string& name, int out) {
  int fd = openVerified(name);
  try {
    // The file holds at most the blob's bytes (a sparse encoding's data is less).
    struct stat st;
    if (fstat(fd, &st) < 0) failErrno("stat blob " + name);
    memory_.reserve(uint64_t(st.st_size));
    char head[sizeof kSparseMagic] = {};
    if (pread(fd, head, sizeof head, 0) == ssize_t(sizeof head) &&
        isSparseEncoding(head, sizeof head)) {
      writeDecoded(fd, out, kMaxFileSize);
    } else {
      uint8_t buf[1 << 16];
      for (off_t at = 0;;) {
        ssize_t n = pread(fd, buf, sizeof buf, at);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(ErrorCode::System, "read blob " + name);
        if (n == 0) break;
        for (ssize_t done = 0; done < n;) {
          ssize_t w = pwrite(out, buf + done, size_t(n - done), at + done);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) failErrno("copy blob " + name);
          done += w;
        }
        at += n;
      }
    }
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
}

}  // namespace rwd
