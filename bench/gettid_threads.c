/* rr's detach_threads in the small: 20 threads each make syscall(SYS_gettid) 10,000 times
 * through libc's syscall(), yielding every 500. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define THREADS 20
#define CALLS 10000

static void* run(void* arg) {
  long tid = syscall(SYS_gettid), bad = 0;
  for (int i = 0; i < CALLS; i++) {
    bad += syscall(SYS_gettid) != tid;
    if (i % 500 == 0) sched_yield();
  }
  *(long*)arg = bad;
  return NULL;
}

int main(void) {
  pthread_t t[THREADS];
  long bad[THREADS], total = 0;
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, &bad[i]);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    total += bad[i];
  }
  printf("%d threads, %d calls each, %ld wrong\n", THREADS, CALLS, total);
  return total != 0;
}
