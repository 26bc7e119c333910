/**
 * The `batchline` command: run the pipeline locally on a file, serve a watched inbox folder,
 * estimate a file's cost, or operate a stack (cli/ops/). Errors in how it was called are one line
 * on stderr with exit code 2.
 */
import { readFile } from 'node:fs/promises';
import { didYouMean, UsageError } from './args';
import { processIo, type Io } from './io';

const LOCAL_HELP = `Usage: batchline <command> [options]

Runs large Claude workloads through the Anthropic Message Batches API.

The whole pipeline on this machine (no AWS account; no API key unless --live):
  run [FILE.jsonl]      run one file through the pipeline and print its summary
  serve                 keep the pipeline up and run every file dropped in a folder
  estimate FILE.jsonl   validate a file and estimate its cost, sending nothing
  resume                carry on the live jobs a stopped run --live or serve --live left
  doctor                check the API key, the API's reachability and batch limits (free)
`;

const HELP_FOOTER = `
Options:
  -h, --help            show this help
  -V, --version         print batchline's version

Run "batchline <command> --help" for a command's options. To start:

  npx batchline run examples/classification.jsonl

Exit status: 0 when every input row succeeded, 3 when the job ran to the end but some rows did
not succeed, 1 when the job failed or was rejected, 2 for a usage error, 130 when interrupted.
`;

type Command = (args: string[], io: Io) => Promise<number>;

/** Loaded on demand: `--help` or a typo should not wait for the AWS SDK and the CDK to load. */
const LOCAL_COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run')).runCommand,
  serve: async () => (await import('./serve')).serveCommand,
  estimate: async () => (await import('./estimate')).estimateCommand,
  resume: async () => (await import('./resume')).resumeCommand,
  doctor: async () => (await import('./doctor')).doctorCommand,
};

/** The commands that operate a stack (cli/ops/), loaded only when one is asked for. */
const opsCommands = async () => import('./ops/index');

async function findCommand(name: string): Promise<Command | undefined> {
  const local = LOCAL_COMMANDS[name];
  if (local) return local();
  const ops = (await opsCommands()).OPS_COMMANDS[name];
  return ops && ((args, io) => ops.run(args, io));
}

async function help(): Promise<string> {
  const { OPS_HELP_LINES } = await opsCommands();
  return `${LOCAL_HELP}\nOperating a stack, deployed or served locally:\n${OPS_HELP_LINES}${HELP_FOOTER}`;
}

/** Errors that are the caller's to fix: a flag, a file, a port, a setting. */
const USAGE_ERRORS = new Set(['UsageError', 'PortInUse', 'ConfigError', 'SettingsError']);
/** Errors whose message says it all. */
/** Failures of the user's surroundings (the network): their message says what to check. */
const ENVIRONMENT_ERRORS = new Set(['ApiUnreachable', 'NotConfirmed']);
const PLAIN_ERRORS = new Set(['LocalStackError', 'UnsupportedDefinition', 'ConflictingEnvironment', 'UnresolvableToken']);

/** The package's version, from package.json beside cli/. */
async function version(): Promise<string> {
  const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === 'help' && args[0] !== undefined) return main([args[0], '--help'], io);
    io.stdout.write(await help());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    io.stdout.write(`batchline ${await version()}\n`);
    return 0;
  }
  try {
    const command = await findCommand(name);
    if (!command) {
      const known = name.startsWith('-')
        ? ['--help', '--version']
        : [...Object.keys(LOCAL_COMMANDS), ...Object.keys((await opsCommands()).OPS_COMMANDS), 'help'];
      const what = name.startsWith('-') ? 'option' : 'command';
      io.stderr.write(`batchline: unknown ${what} "${name}"${didYouMean(name, known)} (see batchline --help)\n`);
      return 2;
    }
    return await command(args, io);
  } catch (error) {
    const err = error instanceof Error ? error : new Error(String(error));
    if (io.env.BATCHLINE_DEBUG) io.stderr.write(`${err.stack ?? String(err)}\n`);
    if (err instanceof UsageError || USAGE_ERRORS.has(err.name)) {
      io.stderr.write(`batchline ${name}: ${err.message}\n`);
      return 2;
    }
    if (ENVIRONMENT_ERRORS.has(err.name)) {
      // The user's surroundings, not a fault of batchline: what is wrong and what to check, no trace.
      io.stderr.write(`batchline ${name}: ${err.message}\n`);
      return 1;
    }
    const detail = PLAIN_ERRORS.has(err.name) ? err.message : `${err.name}: ${err.message}`;
    io.stderr.write(`batchline ${name}: ${detail}\n${io.env.BATCHLINE_DEBUG ? '' : '(set BATCHLINE_DEBUG=1 for the stack trace)\n'}`);
    return 1;
  }
}
