// The trace's codec: zstd (native/third_party/zstd) for event chunks and exec snapshots, zlib
// only to read streams of version 3 and older. Compressed bytes come from untrusted traces: a
// frame is decompressed only into a buffer of the size the trace's own header names, and only
// when the frame says it holds exactly that much, so a small frame cannot make the reader
// allocate or write more than the caller allowed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rwd {

// Event chunks are compressed on the recorder's path: the fastest level that still finds
// repeats. Snapshots are few and small: a level that packs them tighter.
constexpr int kEventChunkLevel = 1;
// After a chunk that packed to more than two thirds of its size (mostly data the program read,
// often compressed already or random): a negative level, which leaves literals as they are and
// runs three times as fast on such data (100 MB of reads: 1.3 GB/s against 0.4 GB/s).
constexpr int kEventChunkFastLevel = -3;
constexpr int kSnapshotLevel = 3;

// Appends one zstd frame of [data, data+len), its content size in its header, to `out`.
void zstdCompress(const void* data, size_t len, int level, std::vector<uint8_t>& out);

// Decompresses the zstd frame [in, in+inLen) into out[0, outLen). False when it is not exactly
// one well-formed frame holding outLen bytes.
bool zstdDecompress(const void* in, size_t inLen, void* out, size_t outLen);

// The same for a zlib stream (RFC 1950), as streams up to version 3 hold.
bool zlibDecompress(const void* in, size_t inLen, void* out, size_t outLen);

}  // namespace rwd
