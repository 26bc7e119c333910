/**
 * Before a live command pays: the estimate is on screen, and a person says yes (or `--yes` did).
 * With no terminal to ask on, a live command without --yes is refused, never run unasked.
 */
import { createInterface } from 'node:readline/promises';
import { UsageError } from './args';

/** The person at the terminal said no: nothing was sent. */
export class NotConfirmed extends Error {
  override readonly name = 'NotConfirmed';
}

export async function confirmPaying(
  question: string,
  options: { yes: boolean; input?: NodeJS.ReadStream; output: NodeJS.WritableStream; flag?: string },
): Promise<void> {
  if (options.yes) return;
  const input = options.input ?? process.stdin;
  if (!input.isTTY) {
    throw new UsageError(`${options.flag ?? '--live'} sends batches the account pays for: with no terminal to ask on, confirm with --yes`);
  }
  const prompt = createInterface({ input, output: options.output });
  try {
    const answer = await prompt.question(`${question} [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new NotConfirmed('not confirmed: nothing was sent');
  } finally {
    prompt.close();
  }
}
