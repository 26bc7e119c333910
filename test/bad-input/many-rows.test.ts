/**
 * More valid rows than one batch may hold (100,000) is not bad input: Prepare chunks the file, it
 * does not fail it. Run on Prepare's core against s3rver and dynalite (the whole pipeline would
 * spend its time on 100,001 simulated results, which prove nothing more here).
 */
import { describe, expect, it } from 'vitest';
import { API_MAX_REQUESTS_PER_BATCH } from '../../shared/config';
import { prepareJob } from '../../shared/jobs/prepare-job';
import { registerJob } from '../../shared/jobs/register-job';
import { queryPartition } from '../../shared/store/dynamo';
import { CHUNK_SK_PREFIX, jobPk, type ChunkItem } from '../../shared/store/items';
import { jobKeys } from '../../shared/store/keys';
import { useLocalAws } from '../support/aws';
import { attemptText } from '../support/chunks';
import { pipelineConfig, putInput, readText } from '../support/pipeline';

const ROWS = API_MAX_REQUESTS_PER_BATCH + 1;

describe('a file of more than 100,000 valid rows', () => {
  const aws = useLocalAws();

  it('is split into a full chunk of 100,000 rows and one of the rest, with no invalid line', async () => {
    const lines: string[] = [];
    for (let i = 1; i <= ROWS; i++) {
      lines.push(`{"custom_id":"r-${i}","params":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"${i}"}]}}\n`);
    }
    const key = 'inbox/many.jsonl';
    await putInput(aws, key, lines.join(''));
    const config = pipelineConfig(aws);
    const { jobId } = await registerJob({ bucket: aws.bucket, key, mode: 'strict' }, { s3: aws.s3, dynamo: aws.dynamo, config });

    const result = await prepareJob({ jobId }, { s3: aws.s3, dynamo: aws.dynamo, config });

    expect(result).toEqual({ jobId, outcome: 'ready', chunks: [0, 1], validRows: ROWS, invalidRows: 0 });
    const chunks: ChunkItem[] = [];
    for await (const chunk of queryPartition<ChunkItem>(aws.dynamo, aws.table, jobPk(jobId), CHUNK_SK_PREFIX)) chunks.push(chunk);
    expect(chunks.map(({ chunk, rows, firstLine, lastLine }) => ({ chunk, rows, firstLine, lastLine }))).toEqual([
      { chunk: 0, rows: 100_000, firstLine: 1, lastLine: 100_000 },
      { chunk: 1, rows: 1, firstLine: 100_001, lastLine: 100_001 },
    ]);
    expect(await attemptText(aws, { jobId, chunk: 1, attempt: 1 })).toBe(lines[ROWS - 1]);
    expect(await readText(aws, jobKeys(jobId).invalidWork)).toBe('');
  }, 60_000);
});
