import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real nodes, workers and sockets; on a 2-core machine
    // running many files at once only adds noise and timeouts.
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
