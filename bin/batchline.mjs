#!/usr/bin/env node
// The `batchline` command. In a clone the CLI runs from its TypeScript source (tsx registers its
// loader first); an installed package has no source, and runs what scripts/build.ts built into dist/.
import { existsSync } from 'node:fs';

let main;
if (existsSync(new URL('../cli/main.ts', import.meta.url))) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../cli/main.ts'));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
const code = await main(process.argv.slice(2));
process.exitCode = code;
// Everything is stopped by now; a handle some library left open must not keep the command alive.
setTimeout(() => process.exit(code), 2000).unref();
