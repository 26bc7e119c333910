import { Validations, type App, type Stack } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addNagChecks, buildApp, readProjectContext } from '../../infra/app';
import { TEST_CONTEXT } from './fixture';

const outdirs: string[] = [];
afterEach(() => {
  for (const dir of outdirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The app, synthesized (templates only), so the checks see the finished tree. */
function synthesized(context: Record<string, unknown>, extend: (stack: Stack) => void = () => undefined): { app: App; stack: Stack } {
  const outdir = mkdtempSync(path.join(tmpdir(), 'batchline-nag-test-'));
  outdirs.push(outdir);
  const built = buildApp({ context, bundling: false, outdir });
  extend(built.stack);
  return built;
}

interface Finding {
  rule: string;
  path: string | undefined;
  severity: string | undefined;
}

function findings(pack: AwsSolutionsChecks, stack: Stack): Finding[] {
  return pack
    .validateScope(stack)
    .violations.flatMap((violation) =>
      violation.violatingResources.map((resource) => ({ rule: violation.ruleName, path: resource.constructPath, severity: violation.severity })),
    );
}

/** The pack with acknowledgements ignored: every finding, acknowledged or not. */
function everyFinding(): AwsSolutionsChecks {
  const pack = new AwsSolutionsChecks();
  // cdk-nag consults acknowledgements in one private method; this instance answers "no" for all.
  (pack as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  return pack;
}

interface Acknowledgement {
  rule: string;
  path: string;
  reason: string;
}

function acknowledgements(stack: Stack): Acknowledgement[] {
  return stack.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) => Object.entries(entry.data as Record<string, string>))
      .map(([id, reason]) => ({ rule: id.replace(/^annotation::/i, ''), path: construct.node.path, reason }))
      .filter((acknowledgement) => acknowledgement.rule.startsWith('AwsSolutions-')),
  );
}

const CONTEXTS: Array<[string, Record<string, unknown>]> = [
  ['the test context (two schedules, a proxy, tuned settings)', TEST_CONTEXT],
  ['cdk.json as shipped', readProjectContext()],
  ['an existing secret and no schedules', { 'batchline:apiKeySecretName': 'team/anthropic-api-key' }],
  ["a key of the stack's for the data and a year of logs", { ...TEST_CONTEXT, 'batchline:settings': { encryptionKey: 'stack', logRetentionDays: 365 } }],
  ['a key of yours for the data', { 'batchline:settings': { encryptionKey: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab' } }],
];

describe('cdk-nag AwsSolutions checks', () => {
  it.each(CONTEXTS)('find nothing unacknowledged in the stack, with %s', (_name, context) => {
    const { app, stack } = synthesized(context);
    app.synth();
    expect(findings(new AwsSolutionsChecks(), stack)).toEqual([]);
  });

  it('are acknowledged only for findings that exist, on the construct that has them, each with its reason', () => {
    const { app, stack } = synthesized(TEST_CONTEXT);
    app.synth();
    const all = findings(everyFinding(), stack);
    const acknowledged = acknowledgements(stack);
    // Something to check: the stack does accept findings (IAM5 wildcards of CDK's grants, L1, ...).
    expect(acknowledged.length).toBeGreaterThan(20);
    const stale = acknowledged.filter(
      (acknowledgement) => !all.some((finding) => finding.rule === acknowledgement.rule && `${finding.path ?? ''}/`.startsWith(`${acknowledgement.path}/`)),
    );
    expect(stale).toEqual([]);
    for (const { rule, reason } of acknowledged) expect(reason.length, `the reason for ${rule}`).toBeGreaterThanOrEqual(60);
    // A rule is acknowledged where it applies, never for the whole stack.
    expect(acknowledged.filter((acknowledgement) => acknowledgement.path === stack.node.path)).toEqual([]);
  });

  it('accept only these rules, each for the reason their acknowledgement gives', () => {
    const { stack } = synthesized(TEST_CONTEXT);
    const rules = new Set(acknowledgements(stack).map(({ rule }) => rule.replace(/\[.*$/, '')));
    expect([...rules].sort()).toEqual(['AwsSolutions-IAM5', 'AwsSolutions-L1', 'AwsSolutions-SMG4', 'AwsSolutions-SQS3']);
  });

  it('run in the synth when batchline:nag asks (addNagChecks): the stack passes, an unacknowledged finding stops it, named', async () => {
    const passing = synthesized(TEST_CONTEXT);
    await addNagChecks(passing.app);
    expect(() => passing.app.synth()).not.toThrow();

    const failing = synthesized(TEST_CONTEXT, (stack) => new s3.Bucket(stack, 'Unchecked'));
    await addNagChecks(failing.app);
    let report = '';
    try {
      failing.app.synth();
    } catch (error) {
      report = (error as Error).message;
    }
    expect(report).toContain('AwsSolutions-S1');
    expect(report.match(/Batchline\/[\w/-]+/g)?.every((where) => where.startsWith('Batchline/Unchecked/'))).toBe(true);
  });
});
