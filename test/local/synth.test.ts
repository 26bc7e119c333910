import { describe, expect, it } from 'vitest';
import { mergeContext } from '../../local/synth';

describe('the context a local synth uses', () => {
  it("is cdk.json's, with settings merged key by key and other keys replaced", () => {
    const project = {
      'batchline:settings': { maxAttempts: 3, pollMinSeconds: 60 },
      'batchline:schedules': [{ name: 'nightly', cron: 'cron(0 23 * * ? *)', prefix: 'scheduled/nightly/' }],
    };
    const merged = mergeContext(project, {
      'batchline:settings': { maxRequestsPerChunk: 50, maxAttempts: 2 },
      'batchline:schedules': [],
    });
    expect(merged).toEqual({
      'batchline:settings': { maxAttempts: 2, pollMinSeconds: 60, maxRequestsPerChunk: 50 },
      'batchline:schedules': [],
    });
  });

  it("leaves cdk.json's context as it is when nothing overrides it", () => {
    expect(mergeContext({ a: 1, 'batchline:settings': { maxAttempts: 3 } }, {})).toEqual({ a: 1, 'batchline:settings': { maxAttempts: 3 } });
  });
});
