#include "core/syscall_trampoline.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstddef>

#include "core/code_writer.h"
#include "core/error.h"

namespace rwd {
namespace {

constexpr uint64_t kLeft = kFeed + offsetof(FeedHeader, left);
constexpr uint64_t kNext = kFeed + offsetof(FeedHeader, next);
constexpr uint64_t kSavedRdi = kFeed + offsetof(FeedHeader, saved);
constexpr uint64_t kSavedRsi = kSavedRdi + 8;

static_assert(offsetof(FeedRecord, args) == 8 && offsetof(FeedRecord, result) == 40 &&
                  offsetof(FeedRecord, outAddr) == 48 && offsetof(FeedRecord, outLen) == 56 &&
                  sizeof(FeedRecord) == 64,
              "the trampoline's code reads records at these offsets");

// Saves or restores the flags through r11 with pushfq or popfq, putting back the stack word below
// rsp that they overwrite: the red zone of the library's code, which must hold what it did when
// recorded (a real syscall writes nothing there). rcx is free: the kernel overwrites it anyway.
void viaStack(CodeWriter& w, std::initializer_list<uint8_t> op) {
  w.emit({0x48, 0x8b, 0x4c, 0x24, 0xf8});  // mov rcx,[rsp-8]
  w.emit(op);
  w.emit({0x48, 0x89, 0x4c, 0x24, 0xf8});  // mov [rsp-8],rcx
}

// Entered by `call` with the syscall's number in rax and its arguments in rdi, rsi, rdx, r10.
std::vector<uint8_t> replayTrampoline() {
  CodeWriter w(RWD_TRAMPOLINE);
  w.emitRel32({0x48, 0x8b, 0x0d}, kLeft);  // mov rcx,[left]
  w.emit({0xe3, 0});                       // jrcxz slow: no flag changed, no memory touched
  const uint64_t toSlow = w.here() - 1;
  w.emit({0xeb, 0});  // jmp fast
  const uint64_t toFast = w.here() - 1;
  const uint64_t mismatch = w.here();
  viaStack(w, {0x41, 0x53, 0x9d});  // push r11; popfq
  const uint64_t slow = w.here();
  w.emit({0x0f, 0x05});  // syscall
  if (w.here() != kReplayTrampolineSyscallEnd) fail(ErrorCode::System, "trampoline layout");
  w.emit({0x48, 0xb9});  // movabs rcx,END: as the recording's syscall left it
  w.emit64(RWD_TRAMPOLINE_SYSCALL_END);
  w.emit({0xc3});  // ret
  const uint64_t fast = w.here();
  viaStack(w, {0x9c, 0x41, 0x5b});         // pushfq; pop r11
  w.emitRel32({0x48, 0x8b, 0x0d}, kNext);  // mov rcx,[next]
  // cmp REG,[rcx+OFF]; jne mismatch — for the number and the arguments: rax, rdi, rsi, rdx, r10.
  const uint8_t compares[][3] = {{0x48, 0x41, 0x00},
                                 {0x48, 0x79, 0x08},
                                 {0x48, 0x71, 0x10},
                                 {0x48, 0x51, 0x18},
                                 {0x4c, 0x51, 0x20}};
  for (const auto& c : compares) {
    w.emit({c[0], 0x3b, c[1], c[2], 0x75, 0});
    w.patch8(w.here() - 1, mismatch);
  }
  w.emitRel32({0x48, 0x89, 0x3d}, kSavedRdi);  // mov [savedRdi],rdi
  w.emitRel32({0x48, 0x89, 0x35}, kSavedRsi);  // mov [savedRsi],rsi
  w.emit({0x48, 0x8b, 0x41, 0x28});            // mov rax,[rcx+result]
  w.emit({0x48, 0x8b, 0x79, 0x30});            // mov rdi,[rcx+outAddr]
  w.emit({0x48, 0x8d, 0x71, 0x40});            // lea rsi,[rcx+64]: the output
  w.emit({0x48, 0x8b, 0x49, 0x38});            // mov rcx,[rcx+outLen]
  w.emit({0xfc, 0xf3, 0xa4});                  // cld; rep movsb
  w.emit({0x48, 0x83, 0xc6, 0x07});            // add rsi,7
  w.emit({0x48, 0x83, 0xe6, 0xf8});            // and rsi,-8: the next record
  w.emitRel32({0x48, 0x89, 0x35}, kNext);      // mov [next],rsi
  w.emitRel32({0x48, 0xff, 0x0d}, kLeft);      // dec qword [left]
  w.emitRel32({0x48, 0x8b, 0x3d}, kSavedRdi);  // mov rdi,[savedRdi]
  w.emitRel32({0x48, 0x8b, 0x35}, kSavedRsi);  // mov rsi,[savedRsi]
  viaStack(w, {0x41, 0x53, 0x9d});             // push r11; popfq
  w.emit({0x48, 0xb9});                        // movabs rcx,END
  w.emit64(RWD_TRAMPOLINE_SYSCALL_END);
  w.emit({0xc3});  // ret
  w.patch8(toSlow, slow);
  w.patch8(toFast, fast);
  return w.bytes();
}

}  // namespace

void mapSyscallTrampoline(RemoteSyscalls& remote, bool replaying) {
  remote.check("mapping the syscall trampoline", SYS_mmap, RWD_TRAMPOLINE, 4096,
               PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, uint64_t(-1), 0);
  if (!replaying) {
    const uint8_t code[] = {0x0f, 0x05, 0xc3};  // syscall; ret
    remote.task().write(RWD_TRAMPOLINE, code, sizeof code);
    return;
  }
  remote.check("mapping the syscall feed", SYS_mmap, kFeed, kFeedSize, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, uint64_t(-1), 0);
  static const std::vector<uint8_t> code = replayTrampoline();
  remote.task().write(RWD_TRAMPOLINE, code.data(), code.size());
  const uint32_t one = 1;
  remote.task().write(RWD_REPLAYING, &one, sizeof one);
}

}  // namespace rwd
