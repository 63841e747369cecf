// A captured file with large holes (a sparse 100 GiB file, a 1 TiB memfd the program only sized)
// is stored as its data extents, not as its bytes: reading, hashing and storing its zeros would
// take minutes. The encoding starts with kSparseMagic; a file that itself starts with it is
// encoded too, so a "file" blob that starts with it is always an encoding.
//
//   magic (16 bytes) | size (u64) | count (u64) | count x {offset, length} (u64 each) | data
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace rwd {

constexpr char kSparseMagic[16] = "\x7frewind-sparse1";

struct Extent {
  uint64_t offset = 0, length = 0;
};

// The extents of the file at `fd` (`size` bytes long) that hold data (SEEK_DATA/SEEK_HOLE);
// the whole file where the file system cannot tell.
std::vector<Extent> dataExtents(int fd, uint64_t size);

inline bool isSparseEncoding(const void* head, size_t len) {
  return len >= sizeof kSparseMagic && memcmp(head, kSparseMagic, sizeof kSparseMagic) == 0;
}

// Writes the file that the encoding at `blobFd` stands for into `out` (an empty file), which it
// sizes. The encoding comes from a trace: every extent is checked against the size, the order
// and the data present.
void writeDecoded(int blobFd, int out, uint64_t maxSize);

}  // namespace rwd
