// The bench's rdtsc row: 200,000 reads of the TSC in a tight loop, each as `rdtsc; mov %rax,%rcx`
// (one of the patterns the recorder patches), checked to go up.
#include <stdint.h>
#include <stdio.h>

int main(void) {
  uint64_t prev = 0;
  for (int i = 0; i < 200000; i++) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc\n\tmov %%rax,%%rcx" : "=c"(lo), "=d"(hi)::"rax");
    uint64_t v = (uint64_t)hi << 32 | lo;
    if (v <= prev) return 1;
    prev = v;
  }
  puts("rdtsc went up 200000 times");
  return 0;
}
