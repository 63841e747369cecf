// Machine code assembled by hand into a buffer that will run at `base` in a tracee: the few
// trampolines rewind writes into a process (replay/position_trap.h, core/syscall_trampoline.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace rwd {

class CodeWriter {
 public:
  explicit CodeWriter(uint64_t base) : base_(base) {}
  uint64_t here() const { return base_ + bytes_.size(); }
  void emit(std::initializer_list<uint8_t> b) { bytes_.insert(bytes_.end(), b); }
  void emit(const std::vector<uint8_t>& b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  void emit32(int32_t v) {
    uint8_t b[4];
    memcpy(b, &v, 4);
    bytes_.insert(bytes_.end(), b, b + 4);
  }
  void emit64(uint64_t v) {
    emit32(int32_t(uint32_t(v)));
    emit32(int32_t(uint32_t(v >> 32)));
  }
  // An instruction whose last field is a rel32 to `target` (a rip-relative operand or a jump).
  void emitRel32(std::initializer_list<uint8_t> opcode, uint64_t target) {
    emit(opcode);
    emit32(int32_t(int64_t(target - (here() + 4))));
  }
  // A rel32 field at `at` (the field's address) pointing to `target`.
  void patch32(uint64_t at, uint64_t target) {
    int32_t rel = int32_t(int64_t(target - (at + 4)));
    memcpy(&bytes_[at - base_], &rel, 4);
  }
  // A rel8 field at `at` pointing to `target`, which must be in reach.
  void patch8(uint64_t at, uint64_t target) {
    bytes_[at - base_] = uint8_t(int8_t(int64_t(target - (at + 1))));
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  uint64_t base_;
  std::vector<uint8_t> bytes_;
};

}  // namespace rwd
