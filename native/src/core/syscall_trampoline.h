// The syscall buffer's trampoline page (core/syscall_buffer_abi.h): `syscall; ret` at a fixed
// address inside the stub's reserved range, mapped by the recorder after every exec and by replay
// while it rebuilds the address space, so the preload library finds it in both. Its
// RWD_REPLAYING word tells the library which of the two it runs in.
#pragma once

#include "core/remote_syscalls.h"

namespace rwd {

void mapSyscallTrampoline(RemoteSyscalls& remote, bool replaying);

}  // namespace rwd
