import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Recording pins tracer and tracee to one CPU; running suites in parallel on a
    // two-core machine only makes every ptrace stop slower.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
