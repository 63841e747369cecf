/* For bench/query.ts: about a second of computing in rounds; each round calls step() once,
   which writes a global, and every tenth round prints. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t total;

__attribute__((noinline, noipa)) uint64_t step(uint64_t round, uint64_t x) {
  total += x >> 60;
  return total + round;
}

int main(int argc, char **argv) {
  uint64_t rounds = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000;
  uint64_t inner = argc > 2 ? strtoull(argv[2], NULL, 10) : 500000;
  uint64_t x = 88172645463325252ULL;
  for (uint64_t r = 0; r < rounds; r++) {
    for (uint64_t i = 0; i < inner; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    step(r, x);
    if (r % 10 == 0) printf("round %llu total %llu\n", (unsigned long long)r, (unsigned long long)total);
  }
  return 0;
}
