#include "core/blob_store.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "core/error.h"
#include "core/sha256.h"
#include "core/sparse_blob.h"

namespace rwd {
namespace {

void writeAll(int fd, const uint8_t* p, size_t len, const std::string& what) {
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      failErrno("write " + what);
    }
    p += n;
    len -= size_t(n);
  }
}

// Hashes the whole file at `fd`, copying it to `copyTo` unless that is -1.
std::string hashFile(int fd, const std::string& what, int copyTo, const std::string& copyName,
                     uint64_t* size) {
  Sha256 h;
  std::vector<uint8_t> buf(1 << 20);
  off_t at = 0;
  for (;;) {
    ssize_t n = pread(fd, buf.data(), buf.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) failErrno("read " + what);
    if (n == 0) break;
    h.update(buf.data(), size_t(n));
    if (copyTo >= 0) writeAll(copyTo, buf.data(), size_t(n), copyName);
    at += n;
  }
  *size = uint64_t(at);
  return h.hex();
}

// A file whose holes add up to this much is stored as its data extents (core/sparse_blob.h).
constexpr uint64_t kSparseHoles = 1 << 20;

// Hashes and writes to `copyTo` the sparse encoding of the file at `fd`, `size` bytes long.
std::string encodeSparse(int fd, uint64_t size, const std::vector<Extent>& extents,
                         const std::string& what, int copyTo, const std::string& copyName,
                         uint64_t* encodedSize) {
  Sha256 h;
  auto emit = [&](const void* p, size_t n) {
    h.update(p, n);
    writeAll(copyTo, static_cast<const uint8_t*>(p), n, copyName);
    *encodedSize += n;
  };
  *encodedSize = 0;
  uint64_t head[2] = {size, extents.size()};
  emit(kSparseMagic, sizeof kSparseMagic);
  emit(head, sizeof head);
  emit(extents.data(), extents.size() * sizeof(Extent));
  std::vector<uint8_t> buf(1 << 20);
  for (const Extent& e : extents) {
    for (uint64_t done = 0; done < e.length;) {
      size_t want = size_t(std::min<uint64_t>(buf.size(), e.length - done));
      ssize_t n = pread(fd, buf.data(), want, off_t(e.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) failErrno("read " + what);
      // Shrunk since its extents were read: what is gone reads as zeros, as past the end.
      if (n == 0) std::fill(buf.begin(), buf.begin() + ptrdiff_t(want), 0);
      size_t got = n == 0 ? want : size_t(n);
      emit(buf.data(), got);
      done += got;
    }
  }
  return h.hex();
}

// Whether the file at `fd` is to be stored sparse, and its data extents if so.
bool sparseExtents(int fd, uint64_t size, std::vector<Extent>* extents) {
  char head[sizeof kSparseMagic];
  if (pread(fd, head, sizeof head, 0) == ssize_t(sizeof head) &&
      isSparseEncoding(head, sizeof head)) {
    *extents = {Extent{0, size}};
    return true;  // it would read as an encoding
  }
  if (size < kSparseHoles) return false;
  *extents = dataExtents(fd, size);
  uint64_t data = 0;
  for (const Extent& e : *extents) data += e.length;
  return size - data >= kSparseHoles;
}

}  // namespace

std::string sha256Hex(const void* data, size_t len) {
  Sha256 h;
  h.update(data, len);
  return h.hex();
}

std::string sha256OfFile(int fd, const std::string& what) {
  uint64_t size = 0;
  return hashFile(fd, what, -1, "", &size);
}

bool isBlobName(const std::string& name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

BlobStore::BlobStore(const std::string& traceDir) : dir_(traceDir + "/blobs") {
  if (mkdir(dir_.c_str(), 0755) < 0 && errno != EEXIST) failErrno("create " + dir_);
}

std::string BlobStore::pathOf(const std::string& sha256) const { return dir_ + "/" + sha256; }

std::string BlobStore::commitTemp(const std::string& temp, const std::string& sha, uint64_t size,
                                  const std::string& role, const std::string& path) {
  if (known_.count(sha)) {
    unlink(temp.c_str());
    return sha;
  }
  if (rename(temp.c_str(), pathOf(sha).c_str()) < 0) failErrno("store blob " + sha);
  known_[sha] = blobs_.size();
  blobs_.push_back(BlobRef{sha, size, role, path});
  return sha;
}

std::string BlobStore::put(const void* data, size_t len, const std::string& role) {
  if (role == "file" && isSparseEncoding(data, len)) {
    // It would read as an encoding: stored as one, of one extent.
    std::vector<uint8_t> encoded(sizeof kSparseMagic);
    memcpy(encoded.data(), kSparseMagic, sizeof kSparseMagic);
    for (uint64_t word : {uint64_t(len), uint64_t(1), uint64_t(0), uint64_t(len)}) {
      encoded.insert(encoded.end(), reinterpret_cast<uint8_t*>(&word),
                     reinterpret_cast<uint8_t*>(&word) + sizeof word);
    }
    const auto* bytes = static_cast<const uint8_t*>(data);
    encoded.insert(encoded.end(), bytes, bytes + len);
    return store(encoded.data(), encoded.size(), "sparse file");
  }
  return store(data, len, role);
}

std::string BlobStore::store(const void* data, size_t len, const std::string& role) {
  std::string sha = sha256Hex(data, len);
  if (known_.count(sha)) return sha;
  std::string temp = dir_ + "/.tmp-" + std::to_string(tempCounter_++);
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) failErrno("create " + temp);
  writeAll(fd, static_cast<const uint8_t*>(data), len, temp);
  close(fd);
  return commitTemp(temp, sha, len, role, "");
}

std::string BlobStore::putFile(int fd, const std::string& path, bool cached) {
  struct stat st;
  if (fstat(fd, &st) < 0) failErrno("stat " + path);
  const int64_t mtime = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  auto key = std::make_tuple(st.st_dev, st.st_ino, st.st_size, mtime);
  auto hit = fileCache_.find(key);
  if (cached && hit != fileCache_.end() && hit->second.settled) return hit->second.sha256;
  // The kernel's file times are coarse (a clock tick): a write right after a capture can leave
  // size and mtime as they were. Only a capture made well after the file's mtime can be trusted
  // to stand for later ones with the same mtime (git's "racy" rule).
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  const bool settled = int64_t(now.tv_sec) * 1000000000 + now.tv_nsec - mtime > 1000000000;

  std::string temp = dir_ + "/.tmp-" + std::to_string(tempCounter_++);
  int out = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) failErrno("create " + temp);
  uint64_t size = 0;
  std::string sha;
  bool sparse = false;
  try {
    std::vector<Extent> extents;
    sparse = sparseExtents(fd, uint64_t(st.st_size), &extents);
    if (sparse) {
      sha = encodeSparse(fd, uint64_t(st.st_size), extents, path, out, temp, &size);
    } else {
      sha = hashFile(fd, path, out, temp, &size);
    }
  } catch (...) {
    close(out);
    unlink(temp.c_str());
    throw;
  }
  close(out);
  // Not "file": gdb is served files by their path, as their bytes (debugserver/trace_files.ts).
  sha = commitTemp(temp, sha, size, sparse ? "sparse file" : "file", path);
  fileCache_[key] = Captured{sha, settled};
  return sha;
}

std::string BlobStore::adopt(const std::string& file, const std::string& role,
                             const std::string& sha256, uint64_t size) {
  return commitTemp(file, sha256, size, role, "");
}

}  // namespace rwd
