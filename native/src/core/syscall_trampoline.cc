#include "core/syscall_trampoline.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include "core/syscall_buffer_abi.h"

namespace rwd {

void mapSyscallTrampoline(RemoteSyscalls& remote, bool replaying) {
  remote.check("mapping the syscall trampoline", SYS_mmap, RWD_TRAMPOLINE, 4096,
               PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, uint64_t(-1), 0);
  const uint8_t code[] = {0x0f, 0x05, 0xc3};  // syscall; ret
  remote.task().write(RWD_TRAMPOLINE, code, sizeof code);
  const uint32_t one = 1;
  if (replaying) remote.task().write(RWD_REPLAYING, &one, sizeof one);
}

}  // namespace rwd
