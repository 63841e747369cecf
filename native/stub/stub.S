/*
 * The replay stub: a static program with no libc, linked at the address range that the
 * recorder reserves in every recorded process. Replay execs it, then rebuilds the recorded
 * address space around it by injecting syscalls through the syscall instruction at _start.
 * The bss below is scratch memory for the paths and arrays those syscalls take.
 */
	.text
	.globl _start
_start:
	syscall
	int3
	jmp _start

	.bss
	.balign 4096
	.globl scratch
scratch:
	.skip 65536
