// How an exec snapshot (the contents of the writable and anonymous regions right after exec) is
// stored: most of it is zero pages (.bss, a fresh heap, the unused stack), which are left out,
// and the rest is compressed. Each region is a blob of its own (stream version 4 on): the stack
// differs between recordings of the same program (it holds addresses and the environment), the
// data of the program and its loader do not, and blobs are shared by their hash.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace rwd {

// Bytes a snapshot may hold that are not zero pages, so a small hostile blob cannot make the
// replayer allocate what it claims (right after exec, a process holds a few hundred KiB).
constexpr uint64_t kMaxSnapshotData = uint64_t(1) << 30;

// What a stored snapshot stands for: `size` bytes, zero but for the runs, whose bytes are in
// `data` one after another.
struct SnapshotPages {
  struct Run {
    uint64_t offset;
    uint64_t length;
  };
  uint64_t size = 0;
  std::vector<Run> runs;
  std::vector<uint8_t> data;

  // Calls `put(offset, bytes, n)` for each stretch of [from, from + len) that is not zero, the
  // offset counted from `from`.
  void forEachIn(uint64_t from, uint64_t len,
                 const std::function<void(uint64_t, const uint8_t*, size_t)>& put) const;
};

// The stored form ("RWSZ", zstd) of `len` bytes of memory; empty when they are all zero pages
// (the region is then mapped as zero-filled, with no blob).
std::vector<uint8_t> encodeSnapshot(const uint8_t* raw, size_t len);

// A stored snapshot that must stand for `rawSize` bytes: "RWSZ", or the zlib "RWSN" of
// version 3 streams. One that is damaged, stands for another size, or holds more than
// kMaxSnapshotData is a BadTrace error.
SnapshotPages decodeSnapshot(const std::vector<uint8_t>& stored, uint64_t rawSize);

}  // namespace rwd
