#include "core/compression.h"

#include <zlib.h>
#include <zstd.h>

#include <memory>

#include "core/error.h"

namespace rwd {
namespace {

// One context of each kind per thread (the event writer's flusher compresses too): making one
// per call costs more than compressing a small chunk.
ZSTD_CCtx* compressor() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(),
                                                                      ZSTD_freeCCtx);
  if (!ctx) fail(ErrorCode::System, "cannot allocate a zstd compressor");
  return ctx.get();
}

ZSTD_DCtx* decompressor() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(),
                                                                      ZSTD_freeDCtx);
  if (!ctx) fail(ErrorCode::System, "cannot allocate a zstd decompressor");
  return ctx.get();
}

}  // namespace

void zstdCompress(const void* data, size_t len, int level, std::vector<uint8_t>& out) {
  size_t at = out.size();
  out.resize(at + ZSTD_compressBound(len));
  size_t n = ZSTD_compressCCtx(compressor(), out.data() + at, out.size() - at, data, len, level);
  if (ZSTD_isError(n)) {
    fail(ErrorCode::System, std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  }
  out.resize(at + n);
}

bool zstdDecompress(const void* in, size_t inLen, void* out, size_t outLen) {
  // The frame must name its size, and name this one, before anything is written.
  if (ZSTD_getFrameContentSize(in, inLen) != outLen) return false;
  if (ZSTD_findFrameCompressedSize(in, inLen) != inLen) return false;  // one frame, no more
  size_t n = ZSTD_decompressDCtx(decompressor(), out, outLen, in, inLen);
  return !ZSTD_isError(n) && n == outLen;
}

bool zlibDecompress(const void* in, size_t inLen, void* out, size_t outLen) {
  // A stream that holds more than outLen fails as a full buffer; zlib wants room even when
  // there is nothing to inflate.
  Bytef spare;
  Bytef* to = outLen ? static_cast<Bytef*>(out) : &spare;
  uLongf got = outLen ? uLongf(outLen) : 1;
  return uncompress(to, &got, static_cast<const Bytef*>(in), uLong(inLen)) == Z_OK && got == outLen;
}

}  // namespace rwd
