#include "replay/emulated_files.h"

#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"

namespace rwd {
namespace {

void writeAt(int fd, const uint8_t* data, size_t len, uint64_t offset) {
  if (offset > kMaxFileSize || len > kMaxFileSize - offset) {
    fail(ErrorCode::BadTrace, "a write to a shared file lies past any size it can have");
  }
  while (len > 0) {
    ssize_t n = pwrite(fd, data, len, off_t(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) failErrno("write to an emulated shared file");
    data += n;
    len -= size_t(n);
    offset += uint64_t(n);
  }
}

}  // namespace

EmulatedFiles::~EmulatedFiles() {
  for (const auto& [id, fd] : fds_) close(fd);
}

int EmulatedFiles::fdOf(uint64_t id) {
  auto it = fds_.find(id);
  if (it != fds_.end()) return it->second;
  int fd = memfd_create("rewind-shared-file", MFD_CLOEXEC);
  if (fd < 0) failErrno("memfd_create for a shared file");
  fds_[id] = fd;
  memory_.add(fd);
  return fd;
}

static std::string pathOf(int fd) {
  return "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd);
}

void EmulatedFiles::resize(int fd, uint64_t size) {
  if (size > kMaxFileSize) fail(ErrorCode::BadTrace, "a shared file is larger than it can be");
  if (ftruncate(fd, off_t(size)) < 0) failErrno("resize an emulated shared file");
}

std::string EmulatedFiles::reset(uint64_t id, TraceBlobs& blobs, const std::string& blob,
                                 uint64_t size) {
  int fd = fdOf(id);
  resize(fd, 0);
  blobs.copyInto(blob, fd);
  resize(fd, size);
  return pathOf(fd);
}

void EmulatedFiles::apply(const SyscallEvent& ev) {
  if (!ev.file) return;
  auto it = fds_.find(ev.file);
  if (it == fds_.end()) fail(ErrorCode::BadTrace, "a syscall changes a shared file never mapped");
  uint64_t bytes = 0;
  for (const MemoryWrite& w : ev.fileWrites) bytes += w.data.size();
  memory_.reserve(bytes);
  for (const MemoryWrite& w : ev.fileWrites) {
    writeAt(it->second, w.data.data(), w.data.size(), w.addr);
  }
  resize(it->second, ev.fileSize);
}

}  // namespace rwd
