import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Builds dist/ once (and fails on a type error) before any suite runs.
    globalSetup: ['test/support/global_setup.ts'],
    include: ['test/**/*.test.ts'],
    // Recording pins tracer and tracee to one CPU; running suites in parallel on a
    // two-core machine only makes every ptrace stop slower.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
