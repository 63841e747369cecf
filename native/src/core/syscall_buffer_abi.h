/*
 * What the preload library (native/src/preload/) and the recorder share about the syscall buffer
 * (docs/syscall-buffer.md). C, as the library is C: kept to fixed-size types.
 *
 * The recorder maps a page holding `syscall; ret` at RWD_TRAMPOLINE in every recorded process (and
 * replay in every replayed one), inside the range reserved for the replay stub (stub_layout.h).
 * The recorder's seccomp filter lets a syscall made there through without a stop; every other
 * one stops in the recorder (SECCOMP_RET_TRACE with RWD_SECCOMP_DATA).
 */
#ifndef RWD_SYSCALL_BUFFER_ABI_H
#define RWD_SYSCALL_BUFFER_ABI_H

#include <stdint.h>

/* The last page of the stub's range (kStubBase + kStubSize - 4096): the stub never uses it. */
#define RWD_TRAMPOLINE 0x1000000ff000ull
/* Where the trampoline's syscall returns to: what seccomp sees as its instruction pointer. */
#define RWD_TRAMPOLINE_SYSCALL_END (RWD_TRAMPOLINE + 2)
#define RWD_SECCOMP_DATA 0x5257u
/* A word of the trampoline page: 1 in replay (written by the replayer), 0 when recording. */
#define RWD_REPLAYING (RWD_TRAMPOLINE + 2048)

/* Syscall numbers the kernel has none for (it answers ENOSYS), which the recorder takes as the
 * library's requests. */
#define RWD_SYS_BUFFER_INIT 29271  /* (control, buffer, size): 1 when the thread may buffer */
#define RWD_SYS_BUFFER_FLUSH 29272 /* the buffer is full: the recorder empties it */
/* Replay only, (header): the buffer has no TSC value left; the replayer writes the next ones. */
#define RWD_SYS_TSC_NEXT 29273
/* The number of a record holding a value of the TSC that a patched rdtsc read. */
#define RWD_TSC_RECORD (-1)

#define RWD_BUFFER_SIZE (1u << 20)
/* Larger outputs go the traced way. */
#define RWD_MAX_OUTPUT (64u * 1024)

/* One per process, in the library's data. */
struct rwd_control {
  uint32_t enabled; /* cleared by the recorder when the program installs a seccomp filter */
  uint32_t reserved;
  /* What a patched rdtsc calls (record/rdtsc_patch.h): the TSC in edx:eax, every other register
   * and the flags kept. */
  uint64_t tsc_hook;
  /* The TSC a recorded program reads, from CLOCK_MONOTONIC_RAW (toggling PR_SET_TSC for a real
   * one costs two control-register writes, slow in a VM): tsc_base + (ns - ns_base) *
   * tsc_per_ns / 2^32. Written by the recorder when a thread's buffer is set up; 0 before. */
  uint64_t tsc_base;
  uint64_t ns_base;
  uint64_t tsc_per_ns;
  /* Where the hook's code is, in which recording and replay take other paths: the recorder names
   * no position there (it steps the thread out first). */
  uint64_t tsc_code_start, tsc_code_end;
};

/* At the start of each thread's buffer, then the records. */
struct rwd_buffer_header {
  uint32_t used;    /* bytes of header and committed records */
  uint32_t in_call; /* 1 from just before a buffered syscall to its record's commit */
  uint32_t size;
  /* Replay only: how many records of TSC values the replayer wrote at `used` that the thread
   * has not read yet. Always 0 when recording. */
  uint32_t tsc_left;
};

/* One buffered syscall: this, then out_len bytes of what it wrote at out_addr, padded to 8. */
struct rwd_record {
  uint32_t size; /* of the whole record */
  int32_t nr;
  uint64_t args[6];
  int64_t result;
  uint64_t out_addr;
  uint32_t out_len;
  uint32_t reserved;
};

/* A patched rdtsc's value (nr RWD_TSC_RECORD). */
struct rwd_tsc_record {
  uint32_t size; /* 16 */
  int32_t nr;
  uint64_t tsc;
};

#endif
