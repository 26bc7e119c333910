#!/usr/bin/env node
// The `batchline` command. The CLI is TypeScript run from source: tsx registers its loader first.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// Everything is stopped by now; a handle some library left open must not keep the command alive.
setTimeout(() => process.exit(code), 2000).unref();
