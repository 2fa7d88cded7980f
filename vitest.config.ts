import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores: run test files two at a time, each in its own process (tfjs keeps global state).
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } }
  }
})
