// How an exec snapshot (the contents of the writable and anonymous regions right after exec) is
// stored: most of it is zero pages (.bss, a fresh heap, the unused stack), which are left out,
// and the rest is compressed. Snapshots differ between recordings of the same program (the stack
// holds addresses and the environment), so this is what keeps a second recording small.
#pragma once

#include <cstdint>
#include <vector>

namespace rwd {

std::vector<uint8_t> encodeSnapshot(const std::vector<uint8_t>& raw);

// The raw snapshot back; a stored snapshot that is damaged, or does not decode to `rawSize`
// bytes (what the exec record's regions need), is a BadTrace error.
std::vector<uint8_t> decodeSnapshot(const std::vector<uint8_t>& stored, uint64_t rawSize);

}  // namespace rwd
