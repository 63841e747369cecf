#include "core/snapshot_image.h"

#include <zlib.h>

#include <cstring>

#include "core/error.h"

namespace rwd {
namespace {

// "RWSN", u64 raw size, u32 run count, runs of {u64 offset, u64 length} of the pages that are not
// all zero, then the runs' bytes, concatenated and zlib-compressed.
constexpr char kMagic[4] = {'R', 'W', 'S', 'N'};
constexpr size_t kPage = 4096;
constexpr size_t kHeader = 4 + 8 + 4;

struct Run {
  uint64_t offset;
  uint64_t length;
};

bool zeroPage(const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (p[i]) return false;
  }
  return true;
}

void put64(std::vector<uint8_t>& out, uint64_t v) {
  out.insert(out.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 8);
}

[[noreturn]] void damaged(const char* why) {
  fail(ErrorCode::BadTrace, std::string("the exec snapshot is damaged: ") + why);
}

}  // namespace

std::vector<uint8_t> encodeSnapshot(const std::vector<uint8_t>& raw) {
  std::vector<Run> runs;
  std::vector<uint8_t> data;
  for (size_t off = 0; off < raw.size(); off += kPage) {
    size_t len = std::min(kPage, raw.size() - off);
    if (zeroPage(raw.data() + off, len)) continue;
    if (!runs.empty() && runs.back().offset + runs.back().length == off) {
      runs.back().length += len;
    } else {
      runs.push_back({off, len});
    }
    data.insert(data.end(), raw.begin() + long(off), raw.begin() + long(off + len));
  }
  std::vector<uint8_t> out(kMagic, kMagic + 4);
  put64(out, raw.size());
  uint32_t n = uint32_t(runs.size());
  out.insert(out.end(), reinterpret_cast<uint8_t*>(&n), reinterpret_cast<uint8_t*>(&n) + 4);
  for (const Run& r : runs) {
    put64(out, r.offset);
    put64(out, r.length);
  }
  uLongf compressedLen = compressBound(uLong(data.size()));
  size_t at = out.size();
  out.resize(at + compressedLen);
  if (compress2(out.data() + at, &compressedLen, data.data(), uLong(data.size()), 1) != Z_OK) {
    fail(ErrorCode::System, "compressing an exec snapshot failed");
  }
  out.resize(at + compressedLen);
  return out;
}

std::vector<uint8_t> decodeSnapshot(const std::vector<uint8_t>& stored, uint64_t rawSize) {
  if (stored.size() < kHeader || memcmp(stored.data(), kMagic, 4) != 0) damaged("no header");
  uint64_t size;
  uint32_t n;
  memcpy(&size, stored.data() + 4, 8);
  memcpy(&n, stored.data() + 12, 4);
  if (size != rawSize) damaged("its size is not what the exec's regions hold");
  if (n > (stored.size() - kHeader) / 16) damaged("more runs than it holds");
  std::vector<Run> runs(n);
  memcpy(runs.data(), stored.data() + kHeader, size_t(n) * 16);
  uint64_t total = 0;
  uint64_t end = 0;
  for (const Run& r : runs) {
    // In order, apart, within the snapshot: each byte is written once.
    if (r.offset < end || r.length == 0 || r.length > size || r.offset > size - r.length) {
      damaged("a run lies outside it");
    }
    end = r.offset + r.length;
    total += r.length;
  }
  // One byte more than needed: zlib wants room even when there is nothing to inflate.
  std::vector<uint8_t> data(total + 1);
  uLongf got = uLongf(total + 1);
  size_t at = kHeader + size_t(n) * 16;
  if (uncompress(data.data(), &got, stored.data() + at, uLong(stored.size() - at)) != Z_OK ||
      got != total) {
    damaged("its contents do not decompress");
  }
  std::vector<uint8_t> raw(size);
  const uint8_t* p = data.data();
  for (const Run& r : runs) {
    memcpy(raw.data() + r.offset, p, r.length);
    p += r.length;
  }
  return raw;
}

}  // namespace rwd
