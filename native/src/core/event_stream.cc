#include "core/event_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <functional>

#include "common/xxhash.h"  // zstd's (native/third_party/zstd/lib/common), its names prefixed ZSTD_
#include "core/compression.h"
#include "core/error.h"

namespace rwd {
namespace {

constexpr char kMagic[4] = {'R', 'W', 'E', 'V'};
constexpr uint32_t kChunkMagic = 0x4b4e4843;  // "CHNK"
constexpr uint32_t kIndexMagic = 0x58444e49;  // "INDX"
constexpr char kTrailerMagic[8] = {'R', 'W', 'E', 'V', 'E', 'N', 'D', '!'};
constexpr size_t kChunkTarget = 256 * 1024;
constexpr uint32_t kMaxChunk = 64u << 20;
constexpr size_t kMaxSealed = 4;  // chunks waiting for each of the two threads

struct ChunkHeader {
  uint32_t magic;
  uint32_t rawLen;
  uint32_t compressedLen;
  uint32_t count;
  uint64_t firstEvent;
  uint32_t check;  // chunkCheck of the compressed bytes
  uint32_t codec;
};

// The chunk's codec: zstd from stream version 4 on; zlib before, when the field was reserved (0).
constexpr uint32_t kCodecZlib = 0;
constexpr uint32_t kCodecZstd = 1;

struct Trailer {
  uint64_t indexOffset;
  char magic[8];
};

[[noreturn]] void badStream(const std::string& why) {
  fail(ErrorCode::BadTrace, "event stream is damaged: " + why);
}

}  // namespace

uint32_t chunkCheck(uint32_t version, const uint8_t* data, size_t len) {
  if (version >= 5) return uint32_t(XXH64(data, len, 0));
  return uint32_t(crc32(0, data, uInt(len)));
}

// Every byte of the file goes through here: its sha256, which names its blob, is known when it
// is finished, without reading it again.
void EventWriter::write(const void* data, size_t len) {
  hash_.update(data, len);
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd_, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      failErrno("write event stream");
    }
    p += n;
    len -= size_t(n);
    offset_ += uint64_t(n);
  }
}

EventWriter::EventWriter(const std::string& path) : level_(kEventChunkLevel) {
  fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) failErrno("create " + path);
  uint8_t header[8];
  memcpy(header, kMagic, 4);
  memcpy(header + 4, &kEventStreamVersion, 4);
  write(header, sizeof header);
  planned_ = offset_;
  compressor_ = std::thread([this] { compressChunks(); });
  writer_ = std::thread([this] { writeChunks(); });
}

EventWriter::~EventWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  drained_.notify_all();
  if (compressor_.joinable()) compressor_.join();
  if (writer_.joinable()) writer_.join();
  if (fd_ >= 0) close(fd_);
}

bool EventWriter::idle() const {
  return sealed_.empty() && packed_.empty() && !compressing_ && !writing_;
}

void EventWriter::sealChunk() {
  if (chunkCount_ == 0) return;
  sealed_.push_back(SealedChunk{std::move(raw_), chunkFirst_, chunkCount_});
  raw_ = std::vector<uint8_t>();
  if (!spare_.empty()) {
    raw_ = std::move(spare_.back());
    spare_.pop_back();
  }
  raw_.reserve(kChunkTarget);
  chunkCount_ = 0;
  wake_.notify_all();
}

void EventWriter::compressChunks() {
  std::unique_lock<std::mutex> lock(mu_);
  auto due = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  for (;;) {
    wake_.wait_until(lock, due,
                     [this] { return stopping_ || !sealed_.empty() || !writeError_.empty(); });
    if (!writeError_.empty()) break;
    if (sealed_.empty()) {
      if (stopping_ || finished_) break;
      if (std::chrono::steady_clock::now() >= due) {
        sealChunk();
        due = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
      }
      continue;
    }
    SealedChunk chunk = std::move(sealed_.front());
    sealed_.pop_front();
    compressing_ = true;
    lock.unlock();
    std::vector<uint8_t> bytes;
    std::string error;
    try {
      bytes = packChunk(chunk);
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    compressing_ = false;
    chunk.raw.clear();
    if (spare_.size() < kMaxSealed && chunk.raw.capacity() <= 2 * kChunkTarget) {
      spare_.push_back(std::move(chunk.raw));
    }
    if (!error.empty()) writeError_ = error;
    if (writeError_.empty()) packed_.push_back(std::move(bytes));
    wake_.notify_all();
    drained_.notify_all();
    // The writer is behind: hold the chunks here, where the recorder's back-pressure sees them.
    drained_.wait(
        lock, [this] { return packed_.size() < kMaxSealed || stopping_ || !writeError_.empty(); });
  }
}

void EventWriter::writeChunks() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Stopping, it writes what the compressor still hands it.
    wake_.wait(lock, [this] {
      return !packed_.empty() || !writeError_.empty() ||
             (stopping_ && sealed_.empty() && !compressing_);
    });
    if (packed_.empty() || !writeError_.empty()) break;
    std::vector<uint8_t> bytes = std::move(packed_.front());
    packed_.pop_front();
    writing_ = true;
    lock.unlock();
    std::string error;
    try {
      write(bytes.data(), bytes.size());
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    writing_ = false;
    if (!error.empty()) writeError_ = error;
    wake_.notify_all();
    drained_.notify_all();
  }
}

void EventWriter::append(const Event& e) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!writeError_.empty()) fail(ErrorCode::System, writeError_);
  size_t at = raw_.size();
  raw_.resize(at + 4);
  encodeEvent(e, raw_);
  uint32_t len = uint32_t(raw_.size() - at - 4);
  memcpy(raw_.data() + at, &len, 4);
  if (chunkCount_ == 0) chunkFirst_ = events_;
  chunkCount_++;
  events_++;
  if (raw_.size() >= kChunkTarget) {
    sealChunk();
    // The other two threads work on the other core; a recorder that outruns them waits here
    // rather than holding more and more of the trace in memory.
    drained_.wait(lock, [this] { return sealed_.size() < kMaxSealed || !writeError_.empty(); });
  }
}

std::vector<uint8_t> EventWriter::packChunk(const SealedChunk& chunk) {
  std::vector<uint8_t> out(sizeof(ChunkHeader));
  zstdCompress(chunk.raw.data(), chunk.raw.size(), level_, out);
  const size_t compressed = out.size() - sizeof(ChunkHeader);
  level_ = compressed * 3 > chunk.raw.size() * 2 ? kEventChunkFastLevel : kEventChunkLevel;
  ChunkHeader h{kChunkMagic,
                uint32_t(chunk.raw.size()),
                uint32_t(compressed),
                chunk.count,
                chunk.first,
                chunkCheck(kEventStreamVersion, out.data() + sizeof h, compressed),
                kCodecZstd};
  memcpy(out.data(), &h, sizeof h);
  index_.push_back(ChunkIndexEntry{planned_, chunk.first, chunk.count});
  planned_ += out.size();
  return out;
}

void EventWriter::finish() {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return;
  sealChunk();
  drained_.wait(lock, [this] { return idle() || !writeError_.empty(); });
  if (!writeError_.empty()) fail(ErrorCode::System, writeError_);
  // Both threads are idle and stay so: the file is this thread's from here.
  finished_ = true;
  uint64_t indexOffset = offset_;
  uint32_t head[2] = {kIndexMagic, uint32_t(index_.size())};
  write(head, sizeof head);
  write(index_.data(), index_.size() * sizeof(ChunkIndexEntry));
  Trailer t{indexOffset, {}};
  memcpy(t.magic, kTrailerMagic, sizeof t.magic);
  write(&t, sizeof t);
  if (fsync(fd_) < 0) failErrno("fsync event stream");
}

EventReader::EventReader(const std::string& path) {
  file_ = fopen(path.c_str(), "rbe");
  if (!file_) failErrno("open " + path);
  struct stat st;
  fstat(fileno(file_), &st);
  fileSize_ = uint64_t(st.st_size);
  uint8_t header[8];
  if (fread(header, 1, 8, file_) != 8 || memcmp(header, kMagic, 4) != 0) {
    badStream("not a rewind event stream");
  }
  uint32_t version;
  memcpy(&version, header + 4, 4);
  if (version < kOldestEventStreamVersion || version > kEventStreamVersion) {
    fail(ErrorCode::BadTrace,
         "event stream version " + std::to_string(version) +
             " is not supported (supported: " + std::to_string(kOldestEventStreamVersion) + " to " +
             std::to_string(kEventStreamVersion) + ")");
  }
  version_ = version;
  Trailer t;
  if (fileSize_ >= 8 + sizeof t && fseeko(file_, off_t(fileSize_ - sizeof t), SEEK_SET) == 0 &&
      fread(&t, sizeof t, 1, file_) == 1 && memcmp(t.magic, kTrailerMagic, 8) == 0) {
    complete_ = true;
    uint32_t head[2];
    ChunkIndexEntry last;
    if (fseeko(file_, off_t(t.indexOffset), SEEK_SET) == 0 &&
        fread(head, sizeof head, 1, file_) == 1 && head[0] == kIndexMagic && head[1] > 0 &&
        fseeko(file_, off_t(t.indexOffset + sizeof head + (head[1] - 1) * sizeof last), SEEK_SET) ==
            0 &&
        fread(&last, sizeof last, 1, file_) == 1) {
      total_ = last.firstEvent + last.count;
    }
  }
  nextChunkOffset_ = 8;
}

EventReader::~EventReader() { fclose(file_); }

// Reads and checks the chunk at `offset`, which must start at event `first`.
bool EventReader::readChunk(uint64_t offset, uint64_t first, std::vector<uint8_t>& raw,
                            uint64_t* next) const {
  ChunkHeader h;
  if (fseeko(file_, off_t(offset), SEEK_SET) != 0) return false;
  if (fread(&h, sizeof h, 1, file_) != 1) return false;
  if (h.magic == kIndexMagic) return false;
  if (h.magic != kChunkMagic || h.rawLen > kMaxChunk || h.compressedLen > kMaxChunk) {
    badStream("bad chunk header at offset " + std::to_string(offset));
  }
  const uint32_t codec = version_ >= 4 ? kCodecZstd : kCodecZlib;
  if (h.codec != codec) {
    badStream("the chunk at offset " + std::to_string(offset) + " names codec " +
              std::to_string(h.codec) + ", not the " + (codec == kCodecZstd ? "zstd" : "zlib") +
              " of a version " + std::to_string(version_) + " stream");
  }
  if (h.firstEvent != first) {
    badStream("chunk at offset " + std::to_string(offset) + " starts at event " +
              std::to_string(h.firstEvent) + ", expected " + std::to_string(first));
  }
  std::vector<uint8_t> compressed(h.compressedLen);
  if (fread(compressed.data(), 1, h.compressedLen, file_) != h.compressedLen) {
    // A chunk cut off at the end: the recorder was killed while writing it.
    return false;
  }
  if (chunkCheck(version_, compressed.data(), h.compressedLen) != h.check) {
    badStream("checksum mismatch in the chunk holding event " + std::to_string(first));
  }
  // rawLen is bounded above (kMaxChunk), and the frame must hold exactly that much.
  raw.resize(h.rawLen);
  bool ok = codec == kCodecZstd
                ? zstdDecompress(compressed.data(), h.compressedLen, raw.data(), h.rawLen)
                : zlibDecompress(compressed.data(), h.compressedLen, raw.data(), h.rawLen);
  if (!ok) {
    badStream("cannot decompress the chunk holding event " + std::to_string(first) + " to the " +
              std::to_string(h.rawLen) + " bytes its header names");
  }
  *next = offset + sizeof h + h.compressedLen;
  return true;
}

bool EventReader::loadChunk() {
  uint64_t next;
  if (!readChunk(nextChunkOffset_, position_, chunk_, &next)) return false;
  cursor_ = 0;
  chunkOffset_ = nextChunkOffset_;
  chunkFirst_ = position_;
  nextChunkOffset_ = next;
  return true;
}

bool EventReader::lookAhead(const std::function<int(const uint8_t*, size_t)>& judge, size_t limit,
                            Event& out) const {
  std::vector<uint8_t> later;  // a chunk after the current one, when the search gets there
  const std::vector<uint8_t>* buf = &chunk_;
  size_t cursor = cursor_;
  uint64_t nextOffset = nextChunkOffset_, position = position_;
  for (size_t n = 0; n < limit; n++) {
    if (cursor >= buf->size()) {
      if (!readChunk(nextOffset, position, later, &nextOffset)) return false;
      buf = &later;
      cursor = 0;
    }
    uint32_t len;
    if (buf->size() - cursor < 4) badStream("record header cut off");
    memcpy(&len, buf->data() + cursor, 4);
    if (buf->size() - cursor - 4 < len || len < 5) badStream("record cut off");
    const uint8_t* record = buf->data() + cursor + 4;
    cursor += 4 + len;
    position++;
    int verdict = judge(record, len);
    if (verdict < 0) return false;
    if (verdict > 0) {
      out = decodeEvent(record, len, version_);
      return true;
    }
  }
  return false;
}

ReaderMark EventReader::mark() const {
  return ReaderMark{chunkOffset_, chunkFirst_, cursor_, position_};
}

void EventReader::rewind(const ReaderMark& m) {
  if (chunk_.empty() || chunkOffset_ != m.chunkOffset) {
    nextChunkOffset_ = m.chunkOffset ? m.chunkOffset : 8;  // 0: no chunk read yet
    position_ = m.chunkFirst;
    chunk_.clear();
    if (m.cursor > 0 && !loadChunk())
      badStream("cannot read back the chunk of event " + std::to_string(m.position));
  }
  cursor_ = m.cursor;
  position_ = m.position;
}

bool EventReader::next(Event& out) {
  if (cursor_ >= chunk_.size()) {
    chunk_.clear();
    if (!loadChunk()) return false;
  }
  uint32_t len;
  if (chunk_.size() - cursor_ < 4) badStream("record header cut off");
  memcpy(&len, chunk_.data() + cursor_, 4);
  cursor_ += 4;
  if (chunk_.size() - cursor_ < len) badStream("record cut off");
  out = decodeEvent(chunk_.data() + cursor_, len, version_);
  cursor_ += len;
  position_++;
  return true;
}

std::vector<DumpedEvent> dumpEvents(const std::string& path, uint64_t from, uint64_t to) {
  std::vector<DumpedEvent> lines;
  EventReader reader(path);
  Event e;
  for (uint64_t index = reader.position(); index <= to && reader.next(e);
       index = reader.position()) {
    if (index >= from) lines.push_back({index, e.tid(), eventKindName(e.type), dumpEvent(e)});
  }
  return lines;
}

}  // namespace rwd
