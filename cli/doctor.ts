/**
 * `batchline doctor`: before a live run, is everything in place? One free list call
 * (`GET /v1/messages/batches?limit=1`, ./reach.ts) shows whether the API can be reached, whether it
 * takes the key, which organization it bills, and the rate limits it reports. Nothing is created;
 * the key is never printed.
 */
import { parse } from './args';
import type { Io } from './io';
import { DEFAULT_BASE_URL } from '../shared/anthropic/client';
import { probeApi, type ApiProbe } from './reach';

export const DOCTOR_HELP = `Usage: batchline doctor

Checks what a live run ("batchline run --live") needs, without spending anything: that
ANTHROPIC_API_KEY is set, that the Message Batches API (ANTHROPIC_BASE_URL, default
${DEFAULT_BASE_URL}) can be reached, that it accepts the key (and for which
organization and workspace), and the rate limits the API reports. It makes one call,
GET /v1/messages/batches?limit=1, which creates nothing and costs nothing.

Options:
  -h, --help   show this help

Exit status: 0 when every check passes, 1 when one fails, 2 for a usage error.
`;

export async function doctorCommand(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {}, 'doctor');
  if (values.help) {
    io.stdout.write(DOCTOR_HELP);
    return 0;
  }
  const say = (line: string) => io.stdout.write(`${line}\n`);
  const apiKey = io.env.ANTHROPIC_API_KEY;
  if (!apiKey) {
    say('✗ ANTHROPIC_API_KEY is not set: export the key of the Anthropic account to bill (console.anthropic.com, API keys)');
    return 1;
  }
  say(`✓ ANTHROPIC_API_KEY is set (${apiKey.length} characters; not shown)`);
  let probe: ApiProbe;
  try {
    probe = await probeApi(io.env.ANTHROPIC_BASE_URL, apiKey);
  } catch (error) {
    say(`✗ ${(error as Error).message}`);
    return 1;
  }
  const requestId = probe.headers['request-id'];
  say(`✓ ${probe.base} answers (HTTP ${probe.status}${requestId ? `, request-id ${requestId}` : ''})`);
  const failed = keyProblem(probe);
  if (failed) {
    say(`✗ ${failed}`);
    return 1;
  }
  const owner = [
    probe.headers['anthropic-organization-id'] && `organization ${probe.headers['anthropic-organization-id']}`,
    probe.headers['anthropic-workspace-id'] && `workspace ${probe.headers['anthropic-workspace-id']}`,
  ].filter(Boolean);
  say(`✓ the API accepts the key${owner.length > 0 ? ` (${owner.join(', ')})` : ''}`);
  const limits = limitLines(probe.headers);
  if (limits.length > 0) {
    say('✓ limits the API reports:');
    for (const line of limits) say(`    ${line}`);
  } else {
    say('  the API reported no rate-limit headers on this call (the batch queue limit shows only when reached: a 429 on create)');
  }
  const newest = (probe.body as { data?: Array<{ id?: string; processing_status?: string; created_at?: string }> } | undefined)?.data?.[0];
  say(
    newest?.id
      ? `  newest batch: ${newest.id} (${newest.processing_status ?? '?'}, created ${newest.created_at ?? '?'})`
      : '  no batches yet in this workspace',
  );
  return 0;
}

/** Why the answer is not a list the key may read, or undefined when it is. */
function keyProblem(probe: ApiProbe): string | undefined {
  if (probe.status === 200) {
    const body = probe.body as { data?: unknown } | undefined;
    return Array.isArray(body?.data) ? undefined : `${probe.base} answered 200 without a list of batches: is ANTHROPIC_BASE_URL the Anthropic API?`;
  }
  const type = (probe.body as { error?: { type?: string } } | undefined)?.error?.type;
  const what = type ? `${probe.status} ${type}` : String(probe.status);
  if (probe.status === 401) return `the API refused ANTHROPIC_API_KEY (${what}): check that the key is whole, current and not revoked`;
  if (probe.status === 403) return `the key may not use the Message Batches API (${what}): check its workspace's permissions`;
  if (probe.status === 429) {
    const retry = probe.headers['retry-after'];
    return `the API is rate limiting this key (${what})${retry ? `; try again in ${retry} s` : ''}`;
  }
  if (probe.status >= 500) return `the API is failing (${what}); try again later`;
  return `the API answered ${what} to a list of batches`;
}

/** The rate-limit headers of the answer, e.g. `requests: 4,000 a minute, 3,999 left, resets 2026-…`. */
function limitLines(headers: Record<string, string>): string[] {
  const lines: string[] = [];
  const families = new Set<string>();
  for (const name of Object.keys(headers)) {
    const match = /^anthropic-ratelimit-(.+)-(limit|remaining|reset)$/.exec(name);
    if (match) families.add(match[1]!);
  }
  for (const family of [...families].sort()) {
    const limit = headers[`anthropic-ratelimit-${family}-limit`];
    const remaining = headers[`anthropic-ratelimit-${family}-remaining`];
    const reset = headers[`anthropic-ratelimit-${family}-reset`];
    const parts = [limit && `limit ${limit}`, remaining && `${remaining} left`, reset && `resets ${reset}`].filter(Boolean);
    lines.push(`${family.replace(/-/g, ' ')}: ${parts.join(', ')}`);
  }
  return lines;
}
