/* Four threads, mostly compute: each runs rounds of an LCG in a function of its own, then adds
 * its result to a shared total under a mutex. About 1 s of CPU in all. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define THREADS 4
#define ROUNDS 200
#define STEPS 800000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t total;
static int order[THREADS * ROUNDS];
static int done;

static uint64_t work_unit(uint64_t x) {
  for (int i = 0; i < STEPS; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  return x;
}

static void *worker(void *arg) {
  uint64_t x = (uint64_t)(uintptr_t)arg;
  for (int r = 0; r < ROUNDS; r++) {
    x = work_unit(x);
    pthread_mutex_lock(&mu);
    total += x >> 48;
    order[done++] = (int)(uintptr_t)arg;
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

int main(void) {
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  /* The longest run of rounds one thread finished while others waited: fairness. */
  int longest = 0, run = 0;
  for (int i = 0; i < THREADS * ROUNDS; i++) {
    run = i > 0 && order[i] == order[i - 1] ? run + 1 : 1;
    if (run > longest) longest = run;
  }
  printf("total %llu, longest run of one thread %d rounds\n", (unsigned long long)total, longest);
  return 0;
}
