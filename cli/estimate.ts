/** `batchline estimate FILE.jsonl`: validates and prices a file without sending anything. */
import { createReadStream } from 'node:fs';
import { readPipelineSettings } from '../shared/config';
import { EstimateTotals, type EstimateTotalsJson, type OutputHistory } from '../shared/cost/cost';
import { readOutputHistory } from '../shared/jobs/output-history';
import { priceTableFromConfig } from '../shared/cost/prices';
import type { RawLine } from '../shared/jsonl/lines';
import { maxLineBytesFor, sourceLines, tooLongOutcome } from '../shared/validation/input-lines';
import { BATCH_BODY_OVERHEAD, validateStream, type InvalidLine } from '../shared/validation/request';
import { modelCatalog } from '../shared/validation/models';
import { atMostOne, parse, readableFile, UsageError } from './args';
import { failureMessage, OpsFailure } from './ops/command';
import { resolveTarget, TARGET_OPTIONS, type Target } from './ops/target';
import { count, displayPath, plural, usd } from './format';
import type { Io } from './io';
import { JSON_FLAGS, wantsJson, writeJson } from './json';
import { WIRE_GROWTH_BYTES } from '../shared/jobs/wire-ids';

export const ESTIMATE_HELP = `Usage: batchline estimate FILE.jsonl [options]

Validates a JSONL file of {custom_id, params} requests exactly as the pipeline would, and estimates
its tokens and cost at batch rates. Nothing is sent anywhere.

Input tokens are counted by the API's published rules as far as they go (images by their pixel
size, PDFs by page, the tool-use system prompt, per-message overhead) and text at about 4
characters a token in English (CJK about one a character): docs/api-reference.md §10. Prompt
caching as the API bills it. Two figures:

  upper bound   output at each request's max_tokens, and every row writing its cache_control
                prefixes (rows that start together each write; a primed prefix may have expired)
  expected      the prompt cache at its best: in each batch the first row with a prefix writes it
                and the others read it (with --prime-cache, a prefix 3 rows share is written once
                at standard price and every row reads it); output at max_tokens × what past jobs'
                rows of the model used of it, from the output history of the stack named by
                --stack or --local (without history, or either flag: at max_tokens). The budget
                guard judges this one.

Options:
  --stack NAME             read the output history of this deployed stack (AWS credentials and
                           region from the standard chain)
  --local DIR              read the output history of the local stack "batchline serve" runs in DIR
  --prime-cache            estimate as a job that primes the prompt cache
  --show N                 how many invalid lines to list (default 5)
  --allow-unknown-models   accept a model batchline does not know (not in its price table, nor
                           added with BATCHLINE_PRICES); by default such a line is invalid
  --json                   print the result as one JSON document on stdout (docs/cli-json.md);
                           the exit status is the same. --output json is the same as --json;
                           --output text (the default) is not
  -h, --help               show this help

Exit status: 0 when every line is valid, 1 when some are invalid, 2 for a usage error.
`;

export async function estimateCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    args,
    { ...JSON_FLAGS, ...TARGET_OPTIONS, show: { type: 'string' }, 'allow-unknown-models': { type: 'boolean' }, 'prime-cache': { type: 'boolean' } },
    'estimate',
  );
  if (values.help) {
    io.stdout.write(ESTIMATE_HELP);
    return 0;
  }
  const json = wantsJson(values);
  const given = atMostOne(positionals, 'estimate');
  if (given === undefined) throw new UsageError('batchline estimate needs a file (see batchline estimate --help)');
  const file = await readableFile(io.cwd, given, { streams: true });
  const show = values.show === undefined ? 5 : Number(values.show);
  if (!Number.isInteger(show) || show < 0) throw new UsageError(`--show must be a whole number, got "${String(values.show)}"`);

  let maxBytesPerChunk: number;
  let maxRequestsPerChunk: number;
  let prices;
  let models;
  try {
    const settings = readPipelineSettings(io.env);
    maxBytesPerChunk = settings.maxBytesPerChunk;
    maxRequestsPerChunk = settings.maxRequestsPerChunk;
    prices = priceTableFromConfig(settings);
    models = modelCatalog(prices, { allowUnknown: values['allow-unknown-models'] === true || settings.allowUnknownModels });
  } catch (error) {
    // A malformed setting in the environment is the caller's to fix, like a bad flag.
    throw new UsageError((error as Error).message);
  }

  // Read as Prepare reads it (shared/validation/input-lines.ts): a line far past the largest request
  // is reported, never buffered.
  const maxRequestBytes = maxBytesPerChunk - BATCH_BODY_OVERHEAD - WIRE_GROWTH_BYTES;
  const tooLong: InvalidLine[] = [];
  let tooLongCount = 0;
  async function* fitting(): AsyncGenerator<RawLine> {
    for await (const entry of sourceLines(createReadStream(file), maxLineBytesFor(maxRequestBytes))) {
      if (!('tooLong' in entry)) yield entry;
      else if (tooLongCount++ < show) tooLong.push(tooLongOutcome(entry, maxRequestBytes));
    }
  }
  const validation = validateStream(fitting(), { maxRequestBytes, models });
  const history = await historyOf(values, io);
  const totals = new EstimateTotals({ prices, history: history?.history, primeCache: values['prime-cache'] === true });
  // Prepare's chunks: each is a batch, which writes its cached prefixes again.
  let rows = 0;
  let firstInvalid: InvalidLine[] = [];
  for await (const outcome of validation) {
    if (outcome.ok) {
      if (rows > 0 && rows % maxRequestsPerChunk === 0) totals.newBatch();
      rows += 1;
      totals.add(outcome.params);
    } else if (firstInvalid.length < show) firstInvalid.push(outcome);
  }
  firstInvalid = [...firstInvalid, ...tooLong].sort((a, b) => a.line - b.line).slice(0, show);
  const counts = { ...validation.counts, invalid: validation.counts.invalid + tooLongCount };
  const estimate = totals.toJSON();

  const exitStatus = counts.invalid > 0 ? 1 : 0;
  if (json) {
    writeJson(io.stdout, 'estimate', {
      file,
      exitStatus,
      counts: { valid: counts.valid, invalid: counts.invalid, blank: counts.blank },
      invalidLines: firstInvalid.map(({ line, code, reason }) => ({ line, code, reason })),
      tokens: {
        input: estimate.tokens.input_tokens,
        output: estimate.tokens.output_tokens,
        cacheRead: estimate.tokens.cache_read_input_tokens,
        cacheWrite: estimate.tokens.cache_creation_input_tokens,
      },
      cost: {
        batchUsd: estimate.totalUsd,
        standardUsd: estimate.standardTotalUsd,
        complete: estimate.complete,
        unpricedModels: estimate.unpricedModels,
        byModel: Object.fromEntries(
          Object.entries(estimate.models).map(([model, entry]) => [
            model,
            { requests: entry.requests, batchUsd: entry.usd?.totalUsd ?? null, standardUsd: entry.usd?.standardTotalUsd ?? null },
          ]),
        ),
      },
      expected: {
        basis: estimate.expected.basis,
        historyRows: estimate.expected.historyRows,
        historyFrom: history?.from ?? null,
        outputTokens: estimate.expected.tokens.output_tokens,
        batchUsd: estimate.expected.totalUsd,
        standardUsd: estimate.expected.standardTotalUsd,
        byModel: Object.fromEntries(
          Object.entries(estimate.expected.models).map(([model, entry]) => [
            model,
            { outputTokens: entry.outputTokens, outputRatio: entry.outputRatio, historyRows: entry.historyRows, batchUsd: entry.usd?.totalUsd ?? null },
          ]),
        ),
      },
      cache: estimate.cache,
    });
    return exitStatus;
  }
  const out: string[] = [
    `${displayPath(io.cwd, file)}: ${plural(counts.valid, 'valid row')}, ${plural(counts.invalid, 'invalid line')}${counts.blank ? `, ${plural(counts.blank, 'blank line')}` : ''}`,
  ];
  for (const invalid of firstInvalid) out.push(`  ${invalid.reason} [${invalid.code}]`);
  if (counts.invalid > firstInvalid.length) out.push(`  … and ${count(counts.invalid - firstInvalid.length)} more`);
  if (counts.invalid > 0) out.push(`Strict mode would reject this file; --lenient runs the ${plural(counts.valid, 'valid row')}.`);
  out.push('');
  out.push(
    `Estimated tokens: ${count(estimate.tokens.input_tokens)} input, ${count(estimate.tokens.cache_read_input_tokens)} cache read, ` +
      `${count(estimate.tokens.cache_creation_input_tokens)} cache write; output ${count(estimate.expected.tokens.output_tokens)} expected, up to ${count(estimate.tokens.output_tokens)}`,
  );
  out.push(`Estimated cost at batch rates: ${usd(estimate.expected.totalUsd)} expected (${expectedBasis(estimate, history?.from)})`);
  out.push(`  up to ${usd(estimate.totalUsd)} with every row using its max_tokens (${usd(estimate.standardTotalUsd)} without the batch discount)`);
  if (estimate.cache.primedPrefixes > 0)
    out.push(`  priming ${plural(estimate.cache.primedPrefixes, 'prefix', 'prefixes')} at standard price: ${usd(estimate.cache.primingUsd)}, in both figures`);
  for (const [model, totalsOfModel] of Object.entries(estimate.models)) {
    const expected = estimate.expected.models[model];
    const figures = totalsOfModel.usd && expected?.usd ? `${usd(expected.usd.totalUsd)} expected, up to ${usd(totalsOfModel.usd.totalUsd)}` : 'no price known';
    out.push(`  ${model}: ${plural(totalsOfModel.requests, 'request')}, ${figures}`);
  }
  if (!estimate.complete) out.push(`Not priced (unknown models): ${estimate.unpricedModels.join(', ')}; set BATCHLINE_PRICES to price them.`);
  io.stdout.write(`${out.join('\n')}\n`);
  return exitStatus;
}

/** The output history of the stack named by --stack or --local (none named: none read). */
async function historyOf(values: Record<string, unknown>, io: Io): Promise<{ history: OutputHistory; from: string } | undefined> {
  if (values.stack === undefined && values.local === undefined) return undefined;
  let target: Target | undefined;
  try {
    target = await resolveTarget(values, io);
    return { history: await readOutputHistory(target.dynamo, target.table), from: target.label };
  } catch (error) {
    const message = failureMessage(error, target);
    if (message === undefined || error instanceof UsageError) throw error;
    throw new OpsFailure(`cannot read the output history: ${message}`);
  } finally {
    target?.close();
  }
}

function expectedBasis(estimate: EstimateTotalsJson, from: string | undefined): string {
  const { basis, historyRows } = estimate.expected;
  if (from === undefined) return 'no history read (--stack or --local reads one): output at max_tokens';
  if (basis === 'max_tokens') return `no history in ${from}: output at max_tokens`;
  const rows = `output from ${plural(historyRows, 'row')} of past jobs in ${from}`;
  return basis === 'partial' ? `${rows}; models without history at max_tokens` : rows;
}
