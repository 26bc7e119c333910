import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    // A test that runs a whole job on the local pipeline is CPU-bound: 5 s alone took over 30 s
    // beside two other suites on this 2-core machine. The limit catches a hang, not slowness.
    testTimeout: 90_000,
    hookTimeout: 90_000,
    // Two cores: keep workers few so emulator-backed suites don't starve each other.
    pool: 'forks',
    maxWorkers: 2,
  },
});
