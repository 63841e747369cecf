#include "core/snapshot_image.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/compression.h"
#include "core/error.h"

namespace rwd {
namespace {

// magic, u64 raw size, u32 run count, runs of {u64 offset, u64 length} of the pages that are not
// all zero, then the runs' bytes, concatenated and compressed: zstd ("RWSZ") or zlib ("RWSN",
// version 3 streams).
constexpr char kZstdMagic[4] = {'R', 'W', 'S', 'Z'};
constexpr char kZlibMagic[4] = {'R', 'W', 'S', 'N'};
constexpr size_t kPage = 4096;
constexpr size_t kHeader = 4 + 8 + 4;

bool zeroPage(const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (p[i]) return false;
  }
  return true;
}

void put64(std::vector<uint8_t>& out, uint64_t v) {
  out.insert(out.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 8);
}

[[noreturn]] void damaged(const std::string& why) {
  fail(ErrorCode::BadTrace, "the exec snapshot is damaged: " + why);
}

}  // namespace

void SnapshotPages::forEachIn(
    uint64_t from, uint64_t len,
    const std::function<void(uint64_t, const uint8_t*, size_t)>& put) const {
  uint64_t at = 0;  // in data
  for (const Run& r : runs) {
    uint64_t lo = std::max(r.offset, from), hi = std::min(r.offset + r.length, from + len);
    if (lo < hi) put(lo - from, data.data() + at + (lo - r.offset), size_t(hi - lo));
    at += r.length;
  }
}

std::vector<uint8_t> encodeSnapshot(const uint8_t* raw, size_t len) {
  std::vector<SnapshotPages::Run> runs;
  std::vector<uint8_t> data;
  for (size_t off = 0; off < len; off += kPage) {
    size_t n = std::min(kPage, len - off);
    if (zeroPage(raw + off, n)) continue;
    if (!runs.empty() && runs.back().offset + runs.back().length == off) {
      runs.back().length += n;
    } else {
      runs.push_back({off, n});
    }
    data.insert(data.end(), raw + off, raw + off + n);
  }
  if (runs.empty()) return {};
  std::vector<uint8_t> out(kZstdMagic, kZstdMagic + 4);
  put64(out, len);
  uint32_t count = uint32_t(runs.size());
  out.insert(out.end(), reinterpret_cast<uint8_t*>(&count), reinterpret_cast<uint8_t*>(&count) + 4);
  for (const SnapshotPages::Run& r : runs) {
    put64(out, r.offset);
    put64(out, r.length);
  }
  zstdCompress(data.data(), data.size(), kSnapshotLevel, out);
  return out;
}

SnapshotPages decodeSnapshot(const std::vector<uint8_t>& stored, uint64_t rawSize) {
  if (stored.size() < kHeader) damaged("no header");
  const bool zstd = memcmp(stored.data(), kZstdMagic, 4) == 0;
  if (!zstd && memcmp(stored.data(), kZlibMagic, 4) != 0) damaged("no header");
  SnapshotPages pages;
  uint32_t n;
  memcpy(&pages.size, stored.data() + 4, 8);
  memcpy(&n, stored.data() + 12, 4);
  if (pages.size != rawSize) damaged("its size is not what the exec's regions hold");
  if (n > (stored.size() - kHeader) / 16) damaged("more runs than it holds");
  pages.runs.resize(n);
  memcpy(pages.runs.data(), stored.data() + kHeader, size_t(n) * 16);
  uint64_t total = 0;
  uint64_t end = 0;
  for (const SnapshotPages::Run& r : pages.runs) {
    // In order, apart, within the snapshot: each byte is written once.
    if (r.offset < end || r.length == 0 || r.length > pages.size ||
        r.offset > pages.size - r.length) {
      damaged("a run lies outside it");
    }
    end = r.offset + r.length;
    total += r.length;  // no overflow: the runs lie apart inside a 64-bit size
  }
  if (total > kMaxSnapshotData) {
    damaged("it claims " + std::to_string(total) + " bytes that are not zero, more than the " +
            std::to_string(kMaxSnapshotData >> 20) + " MiB a snapshot may hold");
  }
  pages.data.resize(total);
  size_t at = kHeader + size_t(n) * 16;
  bool ok = zstd ? zstdDecompress(stored.data() + at, stored.size() - at, pages.data.data(), total)
                 : zlibDecompress(stored.data() + at, stored.size() - at, pages.data.data(), total);
  if (!ok)
    damaged("its contents do not decompress to the " + std::to_string(total) + " bytes it names");
  return pages;
}

}  // namespace rwd
