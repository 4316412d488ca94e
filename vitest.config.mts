import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native code and worker threads do not mix: every test file gets its own process.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
