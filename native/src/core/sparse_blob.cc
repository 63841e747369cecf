#include "core/sparse_blob.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "core/error.h"

namespace rwd {
namespace {

void readExact(int fd, void* buf, size_t len, off_t at) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = pread(fd, p, len, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) failErrno("read a sparse blob");
    if (n == 0) fail(ErrorCode::BadTrace, "a sparse blob is shorter than its extents");
    p += n;
    len -= size_t(n);
    at += n;
  }
}

void writeExact(int fd, const uint8_t* p, size_t len, off_t at) {
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) failErrno("write a file from a sparse blob");
    p += n;
    len -= size_t(n);
    at += n;
  }
}

}  // namespace

std::vector<Extent> dataExtents(int fd, uint64_t size) {
  std::vector<Extent> extents;
  off_t at = 0;
  while (uint64_t(at) < size) {
    off_t data = lseek(fd, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return {Extent{0, size}};
    }
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return {Extent{0, size}};
    uint64_t end = std::min(uint64_t(hole), size);
    if (uint64_t(data) >= end) break;
    extents.push_back(Extent{uint64_t(data), end - uint64_t(data)});
    at = hole;
  }
  return extents;
}

void writeDecoded(int blobFd, int out, uint64_t maxSize) {
  char magic[sizeof kSparseMagic];
  uint64_t head[2];
  readExact(blobFd, magic, sizeof magic, 0);
  readExact(blobFd, head, sizeof head, sizeof magic);
  const uint64_t size = head[0], count = head[1];
  struct stat st;
  if (fstat(blobFd, &st) < 0) failErrno("stat a sparse blob");
  const uint64_t room = uint64_t(st.st_size) - (sizeof magic + sizeof head);
  if (!isSparseEncoding(magic, sizeof magic) || size > maxSize || count > room / sizeof(Extent)) {
    fail(ErrorCode::BadTrace, "a sparse blob has an impossible size or extent count");
  }
  if (ftruncate(out, off_t(size)) < 0) failErrno("size a file from a sparse blob");
  std::vector<Extent> extents(count);
  off_t at = off_t(sizeof magic + sizeof head);
  if (count) readExact(blobFd, extents.data(), count * sizeof(Extent), at);
  at += off_t(count * sizeof(Extent));
  uint64_t previousEnd = 0;
  std::vector<uint8_t> buf(1 << 20);
  for (const Extent& e : extents) {
    if (e.offset < previousEnd || e.length > size || e.offset > size - e.length) {
      fail(ErrorCode::BadTrace, "a sparse blob's extents overlap or lie past its size");
    }
    previousEnd = e.offset + e.length;
    for (uint64_t done = 0; done < e.length;) {
      size_t n = size_t(std::min<uint64_t>(buf.size(), e.length - done));
      readExact(blobFd, buf.data(), n, at);
      writeExact(out, buf.data(), n, off_t(e.offset + done));
      at += off_t(n);
      done += n;
    }
  }
  uint8_t extra;
  if (pread(blobFd, &extra, 1, at) != 0) {
    fail(ErrorCode::BadTrace, "a sparse blob holds more data than its extents");
  }
}

}  // namespace rwd
