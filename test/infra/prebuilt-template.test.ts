/**
 * The template an installed package ships, with a run's settings applied (infra/prebuilt-template.ts),
 * is the template the CDK synthesizes with those settings.
 */
import { describe, expect, it } from 'vitest';
import { readProjectContext, synthTemplate } from '../../infra/app';
import { applyContext, type PrebuiltTemplate } from '../../infra/prebuilt-template';

const SETTINGS = 'batchline:settings';
const context = readProjectContext();
const prebuilt: PrebuiltTemplate = { context, template: synthTemplate({ context, bundling: false }) as PrebuiltTemplate['template'] };

describe('the shipped template with a run context applied', () => {
  it('is the shipped template itself when the run changes nothing', () => {
    expect(applyContext(prebuilt, context)).toEqual(prebuilt.template);
  });

  it('equals what the CDK synthesizes with the same pipeline and API settings', () => {
    const settings = { maxRequestsPerChunk: '10', maxAttempts: '3', allowUnknownModels: 'true', timeoutMs: '120000', anthropicVersion: '2023-06-01' };
    const run = { ...context, [SETTINGS]: settings };
    const applied = applyContext(prebuilt, run);
    expect(applied).toEqual(synthTemplate({ context: run, bundling: false }));
    expect(applied).not.toEqual(prebuilt.template);
  });

  it('refuses a stack setting or other context, which only the CDK app can apply, naming it', () => {
    expect(() => applyContext(prebuilt, { ...context, [SETTINGS]: { maxConcurrentChunks: 3 } })).toThrow(
      /only the pipeline's settings can be changed in an installed batchline/,
    );
    // The prefixes are the trigger rule's, the grants' and the lifecycle rules', not only the functions'.
    expect(() => applyContext(prebuilt, { ...context, [SETTINGS]: { resultsPrefix: 'team/out/' } })).toThrow(
      /only the pipeline's settings can be changed in an installed batchline/,
    );
    expect(() => applyContext(prebuilt, { ...context, 'batchline:anthropicBaseUrl': 'https://proxy.example.com' })).toThrow(
      /batchline:anthropicBaseUrl cannot be changed in an installed batchline/,
    );
  });

  it('checks the settings with the one settings reader', () => {
    expect(() => applyContext(prebuilt, { ...context, [SETTINGS]: { maxAttempts: '0' } })).toThrow(/maxAttempts/);
  });
});
