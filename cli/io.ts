/** What a command reads and writes besides its arguments, so main() stays the one place that touches process. */

export interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: Record<string, string | undefined>;
  cwd: string;
}

export const processIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() });

/**
 * Ctrl-C (or SIGTERM) runs `stop` once and exits 130; a second Ctrl-C while stopping exits at once.
 * Returns a function that removes the handlers.
 */
export function onInterrupt(stop: () => Promise<void>): () => void {
  let stopping = false;
  const handler = () => {
    if (stopping) process.exit(130);
    stopping = true;
    stop().then(
      () => process.exit(130),
      () => process.exit(130),
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
