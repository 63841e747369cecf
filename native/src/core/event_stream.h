// The event stream file: framed event records in independently compressed chunks (zstd),
// followed by a chunk index so a reader can seek to an event without decoding what precedes
// it. A stream cut short (recorder killed) has no index and is read chunk by chunk up to the
// last complete chunk. Layout: docs/trace-format.md.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/events.h"
#include "core/sha256.h"

namespace rwd {

constexpr uint32_t kEventStreamVersion = 5;
// Still read: version 4 (chunks checked by crc32), version 3 (zlib chunks, one snapshot blob per
// exec) and version 2 (snapshots raw, syscall records that end before `child`).
constexpr uint32_t kOldestEventStreamVersion = 2;

// A chunk header's check of its compressed bytes in a stream of `version`: the low 32 bits of
// XXH64 (seed 0) from version 5 on, crc32 before. XXH64 runs several times faster than zlib's
// crc32, which was the largest cost of replaying 100 MB of reads.
uint32_t chunkCheck(uint32_t version, const uint8_t* data, size_t len);

struct ChunkIndexEntry {
  uint64_t offset;      // of the chunk header in the file
  uint64_t firstEvent;  // index of its first event
  uint32_t count;       // events in the chunk
};

// Chunks leave the recorder's thread, which only encodes records, through two threads in a
// row: one compresses a chunk (zstd) while the other hashes and writes the one before, so a
// recording that reads fast keeps both of them and the recorder busy at once. The first also
// seals a partial chunk at least every 100 ms, so a recorder that is killed loses at most the
// last 100 ms of events.
class EventWriter {
 public:
  explicit EventWriter(const std::string& path);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void append(const Event& e);
  // Writes the chunks still held and the index. The stream is complete after this.
  void finish();
  uint64_t eventCount() const { return events_; }
  // The file's, once finished.
  std::string sha256() { return hash_.hex(); }
  uint64_t size() const { return offset_; }

 private:
  struct SealedChunk {
    std::vector<uint8_t> raw;
    uint64_t first;
    uint32_t count;
  };
  void sealChunk();  // with mu_ held: hands the open chunk to the compressor
  // On the compressor, without mu_: the chunk's header and compressed bytes, as written.
  std::vector<uint8_t> packChunk(const SealedChunk& chunk);
  void compressChunks();
  void writeChunks();
  void write(const void* data, size_t len);
  bool idle() const;  // with mu_ held: nothing sealed, packed or in either thread's hands
  std::mutex mu_;
  std::condition_variable wake_;     // both threads: a chunk to take, or stop
  std::condition_variable drained_;  // a chunk moved on
  bool stopping_ = false;
  bool compressing_ = false;  // the compressor holds a chunk outside mu_
  bool writing_ = false;      // the writer holds one
  std::string writeError_;
  std::deque<SealedChunk> sealed_;
  std::deque<std::vector<uint8_t>> packed_;  // compressed, waiting for the writer
  std::vector<std::vector<uint8_t>> spare_;  // raw chunks' buffers, to be used again
  std::thread compressor_;
  std::thread writer_;
  int fd_;
  // The compressor's until finish(): where its next chunk will be written, the level, the index.
  uint64_t planned_ = 0;
  int level_;  // the next chunk's: by how well the last one packed
  std::vector<ChunkIndexEntry> index_;
  // The writer's until finish(): the file's end and its hash.
  uint64_t offset_ = 0;
  Sha256 hash_;
  uint64_t events_ = 0;
  uint64_t chunkFirst_ = 0;
  uint32_t chunkCount_ = 0;
  std::vector<uint8_t> raw_;
  bool finished_ = false;
};

// Where a reader stands, to come back to it (a checkpoint of a replay holds one).
struct ReaderMark {
  uint64_t chunkOffset = 0;  // of the chunk being read
  uint64_t chunkFirst = 0;   // index of that chunk's first event
  size_t cursor = 0;         // in the chunk's records
  uint64_t position = 0;
};

// One event as `rewind dump` shows it.
struct DumpedEvent {
  uint64_t index;
  uint32_t tid;
  const char* kind;
  std::string text;  // dumpEvent
};

// Events [from, to] of a stream file, for diagnosis.
std::vector<DumpedEvent> dumpEvents(const std::string& path, uint64_t from, uint64_t to);

class EventReader {
 public:
  explicit EventReader(const std::string& path);
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // The next event, or false at the end of the stream.
  bool next(Event& out);
  // Index of the event next() returns.
  uint64_t position() const { return position_; }
  // False when the recorder never finished the stream (it was killed).
  bool complete() const { return complete_; }
  // Events in the stream, from its index (0 when cut short: there is none).
  uint64_t total() const { return total_; }
  uint32_t version() const { return version_; }
  ReaderMark mark() const;
  void rewind(const ReaderMark& m);
  // Looks at the events after the current one without moving: `judge` sees each raw record
  // (type byte first, then the task's tid) and says go on (0), found (1: decoded into out) or
  // give up (-1). At most `limit` events.
  bool lookAhead(const std::function<int(const uint8_t*, size_t)>& judge, size_t limit,
                 Event& out) const;

 private:
  bool loadChunk();
  bool readChunk(uint64_t offset, uint64_t first, std::vector<uint8_t>& raw, uint64_t* next) const;
  FILE* file_;
  bool complete_ = false;
  uint64_t total_ = 0;
  uint64_t fileSize_ = 0;
  uint64_t nextChunkOffset_ = 0;
  uint64_t position_ = 0;
  uint32_t version_ = kEventStreamVersion;
  uint64_t chunkOffset_ = 0;
  uint64_t chunkFirst_ = 0;
  std::vector<uint8_t> chunk_;
  size_t cursor_ = 0;
};

}  // namespace rwd
