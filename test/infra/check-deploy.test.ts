/**
 * The parts of `npm run check:deploy` that need no external tool: the Control Tower exceptions
 * (infra/guard-exceptions.ts) and the state machine check. cfn-lint and cfn-guard run in CI.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { buildApp, readProjectContext } from '../../infra/app';
import { GUARD_EXCEPTIONS, judgeGuardFindings, type GuardFinding } from '../../infra/guard-exceptions';
import { PROJECT_ROOT } from '../../infra/handler';
import { DEFAULT_SETTINGS } from '../../infra/settings';
import type { CfnTemplate } from '../../local/template';
import { COMPLIANCE_SETTINGS, validateStateMachines, variants } from '../../scripts/check-deploy';
import { synthesize } from './fixture';

const bucketFinding = (control: string, where = 'Storage/Bucket'): GuardFinding => ({ control, type: 'AWS::S3::Bucket', path: `${where}/Resource` });
const logFinding = (control: string, where: string): GuardFinding => ({ control, type: 'AWS::Logs::LogGroup', path: `${where}/Resource` });

describe('judgeGuardFindings', () => {
  it('explains a finding by an exception for its control and resource, by path or by type', () => {
    const findings = [bucketFinding('CT.S3.PR.9'), logFinding('CT.CLOUDWATCH.PR.2', 'Functions/PollBatch/Logs')];
    const judgement = judgeGuardFindings(findings, DEFAULT_SETTINGS);
    expect(judgement.unexplained).toEqual([]);
    expect(judgement.explained.map(({ finding, exception }) => [finding.path, exception.control])).toEqual([
      ['Storage/Bucket/Resource', 'CT.S3.PR.9'],
      ['Functions/PollBatch/Logs/Resource', 'CT.CLOUDWATCH.PR.2'],
    ]);
  });

  it('leaves unexplained a control no exception names, and one an exception names for other resources', () => {
    const findings = [bucketFinding('CT.S3.PR.1'), { control: 'CT.SQS.PR.1', type: 'AWS::SQS::Queue', path: 'Other/Queue/Resource' }];
    expect(judgeGuardFindings(findings, DEFAULT_SETTINGS).unexplained).toEqual(findings);
  });

  it('reports an exception, or one path of it, that no finding needs', () => {
    const { unused } = judgeGuardFindings([bucketFinding('CT.S3.PR.9')], DEFAULT_SETTINGS);
    const unusedS3Pr9 = unused.filter(({ exception }) => exception.control === 'CT.S3.PR.9').map(({ path: where }) => where);
    expect(unusedS3Pr9).toEqual(['Storage/AccessLogs']);
    // Every exception that applies with the default settings, less the one used.
    expect(unused).toHaveLength(GUARD_EXCEPTIONS.filter((exception) => !exception.metBy?.met(DEFAULT_SETTINGS)).length - 1);
  });

  it('drops the exceptions a setting meets: with the compliance settings, a log group kept 30 days is unexplained', () => {
    const compliant = { ...DEFAULT_SETTINGS, ...COMPLIANCE_SETTINGS };
    const finding = logFinding('CT.CLOUDWATCH.PR.2', 'Workflow/Logs');
    expect(judgeGuardFindings([finding], compliant).unexplained).toEqual([finding]);
    expect(judgeGuardFindings([finding], compliant).unused.map(({ exception }) => exception.control)).not.toContain('CT.CLOUDWATCH.PR.2');
    expect(judgeGuardFindings([finding], DEFAULT_SETTINGS).unexplained).toEqual([]);
  });
});

describe('the exceptions', () => {
  it('name constructs the Batchline construct has', () => {
    const { stack } = buildApp({ context: readProjectContext(), bundling: false });
    const paths = GUARD_EXCEPTIONS.flatMap(({ resources }) => ('paths' in resources ? resources.paths : []));
    expect(paths.length).toBeGreaterThan(0);
    for (const where of paths) {
      const found = where.split('/').reduce<IConstruct | undefined>((scope, id) => scope?.node.tryFindChild(id), stack.batchline);
      expect(found, where).toBeDefined();
    }
  });

  it('each give a reason, and infra/README.md lists exactly them, one row each', () => {
    for (const exception of GUARD_EXCEPTIONS) expect(exception.reason.length, exception.control).toBeGreaterThanOrEqual(60);
    const readme = readFileSync(path.join(PROJECT_ROOT, 'infra/README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| (CT\.[A-Z0-9]+\.PR\.\d+) \| [^|]+ \| ([^|]+) \|/gm)].map(([, control, where]) => `${control} ${where!.trim()}`);
    const listed = GUARD_EXCEPTIONS.map(
      ({ control, resources }) =>
        `${control} ${'paths' in resources ? resources.paths.map((p) => `\`${p}\``).join(', ') : `every ${README_TYPE_NAMES[resources.type]}`}`,
    );
    expect(rows.sort()).toEqual(listed.sort());
  });
});

const README_TYPE_NAMES: Record<string, string> = {
  'AWS::Logs::LogGroup': 'log group',
  'AWS::Lambda::Function': 'function',
};

describe("the check's contexts", () => {
  it('are cdk.json as shipped, and the same with the compliance settings and a root prefix added to its own', () => {
    const [shipped, compliant] = variants({ 'batchline:settings': { maxAttempts: 3 }, 'batchline:nag': false });
    expect(shipped?.context).toEqual({ 'batchline:settings': { maxAttempts: 3 }, 'batchline:nag': false });
    expect(compliant?.context).toEqual({
      'batchline:settings': { maxAttempts: 3, encryptionKey: 'stack', logRetentionDays: 365, rootPrefix: 'teams/batchline/' },
      'batchline:nag': false,
    });
  });
});

describe('validateStateMachines', () => {
  it('finds the job state machine valid once its tokens are resolved', () => {
    const { json } = synthesize(readProjectContext());
    expect(validateStateMachines(json as unknown as CfnTemplate)).toEqual([{ stateMachine: 'JobStateMachine', errors: [] }]);
  });

  it('reports a definition asl-validator rejects, and one that does not resolve', () => {
    const template = (definition: unknown): CfnTemplate => ({
      Resources: { Machine: { Type: 'AWS::StepFunctions::StateMachine', Properties: { DefinitionString: definition } } },
    });
    const broken = JSON.stringify({ StartAt: 'A', States: { A: { Type: 'Pass', Next: 'Missing' } } });
    const [result] = validateStateMachines(template(broken));
    expect(result?.errors.join('\n')).toMatch(/Missing/);
    const [unresolved] = validateStateMachines(template({ 'Fn::Join': ['', ['{"StartAt":"', { Ref: 'Nowhere' }, '"}']] }));
    expect(unresolved?.errors).toEqual(['its definition does not resolve: the template has no resource "Nowhere"']);
  });
});
