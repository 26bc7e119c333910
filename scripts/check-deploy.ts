/**
 * `npm run check:deploy`: what CloudFormation, AWS Control Tower and Step Functions would object to,
 * found before a deploy. Synthesizes the app in-process (templates only, no bundling) as cdk.json
 * ships it and with every compliance setting on, then checks each template with
 *
 * 1. cfn-lint (Python; `pip install cfn-lint`): any finding fails;
 * 2. cfn-guard and AWS Control Tower's proactive controls, as @cdklabs/cdk-validator-cfnguard ships
 *    them: a finding that infra/guard-exceptions.ts does not explain fails, and so does an exception
 *    that no finding needs;
 * 3. asl-validator, on every state machine definition with its tokens resolved to plausible ARNs by
 *    the local runtime's resolver (local/template.ts, local/asl.ts).
 *
 * Exits 0 when all three pass, 1 otherwise.
 */
import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { CfnElement, Stack, type App } from 'aws-cdk-lib';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildApp, readProjectContext } from '../infra/app';
import { judgeGuardFindings, type GuardFinding, type GuardJudgement } from '../infra/guard-exceptions';
import { CONTEXT_KEYS, readSettings, type BatchlineSettings } from '../infra/settings';
import { resolveDefinition } from '../local/asl';
import { LocalNames, resourcesOfType, type CfnTemplate } from '../local/template';

const require = createRequire(import.meta.url);
// asl-validator ships no type declarations.
const validateAsl = require('asl-validator') as (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };

/** The settings that meet the controls a setting can meet (see infra/guard-exceptions.ts). */
/**
 * The second template: every compliance setting on, and the pipeline under a root prefix of its own
 * (as in a bucket shared with other data), so the rule filter, grants and lifecycle rules that follow
 * the prefixes are linted too.
 */
export const COMPLIANCE_SETTINGS = { encryptionKey: 'stack', logRetentionDays: 365, rootPrefix: 'teams/batchline/' } as const;

/** One synthesized template, and what its resources are. */
export interface CheckedTemplate {
  name: string;
  templatePath: string;
  template: CfnTemplate;
  settings: BatchlineSettings;
  /** Logical id → construct path under the Batchline construct (the stack, for its outputs). */
  paths: Map<string, string>;
  app: App;
}

/** The contexts checked: cdk.json as shipped, and the same with every compliance setting on. */
export function variants(context = readProjectContext()): Array<{ name: string; context: Record<string, unknown> }> {
  const raw = context[CONTEXT_KEYS.settings];
  const settings = typeof raw === 'string' ? (JSON.parse(raw) as Record<string, unknown>) : ((raw ?? {}) as Record<string, unknown>);
  return [
    { name: 'cdk.json', context },
    {
      name: `cdk.json + ${Object.entries(COMPLIANCE_SETTINGS)
        .map(([key, value]) => `${key}=${value}`)
        .join(', ')}`,
      context: { ...context, [CONTEXT_KEYS.settings]: { ...settings, ...COMPLIANCE_SETTINGS } },
    },
  ];
}

export function synthesize(name: string, context: Record<string, unknown>, outdir: string): CheckedTemplate {
  const { app, stack } = buildApp({ context, bundling: false, outdir });
  const assembly = app.synth();
  const templatePath = assembly.getStackByName(stack.stackName).templateFullPath;
  const paths = new Map<string, string>();
  // Paths under the Batchline construct (`Storage/Bucket`), as the construct is wherever it is used;
  // the stack's own elements (its outputs) under the stack.
  const base = stack.batchline.node.path;
  for (const construct of stack.node.findAll()) {
    if (!(construct instanceof CfnElement) || Stack.of(construct) !== stack) continue;
    const where = construct.node.path;
    paths.set(
      stack.resolve(construct.logicalId) as string,
      where.startsWith(`${base}/`) ? where.slice(base.length + 1) : where.slice(stack.node.path.length + 1),
    );
  }
  return {
    name,
    templatePath,
    template: JSON.parse(readFileSync(templatePath, 'utf8')) as CfnTemplate,
    settings: readSettings((key) => stack.node.tryGetContext(key)),
    paths,
    app,
  };
}

// ---- cfn-lint

export interface LintFinding {
  rule: string;
  level: string;
  message: string;
  where: string;
}

export class ToolMissing extends Error {
  override readonly name = 'ToolMissing';
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new ToolMissing(`${command} is not installed (or not on PATH). Install it with: pip install 'cfn-lint==1.51.*' (or: pipx install cfn-lint)`)
          : error,
      ),
    );
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** cfn-lint's version and its findings on the templates (default rules: errors and warnings). */
export async function cfnLint(templatePaths: string[]): Promise<{ version: string; findings: LintFinding[] }> {
  const version = (await run('cfn-lint', ['--version'])).stdout.trim();
  const result = await run('cfn-lint', ['--format', 'json', '--', ...templatePaths]);
  let matches: Array<{ Rule: { Id: string }; Level: string; Message: string; Filename: string; Location: { Path?: unknown[] } }>;
  try {
    matches = JSON.parse(result.stdout) as typeof matches;
  } catch {
    throw new Error(`cfn-lint failed (exit ${result.code}):\n${result.stderr || result.stdout}`);
  }
  return {
    version,
    findings: matches.map((match) => ({
      rule: match.Rule.Id,
      level: match.Level,
      message: match.Message,
      where: `${path.basename(match.Filename)} ${(match.Location.Path ?? []).join('/')}`,
    })),
  };
}

// ---- cfn-guard (Control Tower proactive controls)

const CONTROL_ID = /^\[(CT\.[A-Z0-9]+\.PR\.\d+)\]/;

export interface GuardResult {
  judgements: Map<CheckedTemplate, GuardJudgement>;
  /** Violations the plugin reported without a resource or a control id (should not happen). */
  unattributed: string[];
}

export function cfnGuard(templates: CheckedTemplate[]): GuardResult {
  const report = new CfnGuardValidator({ maxBuffer: 64 * 1024 * 1024 }).validate({
    templatePaths: templates.map((t) => t.templatePath),
    // The plugin reads the templates only; the interface asks for an app all the same.
    appConstruct: templates[0]!.app,
  });
  const findings = new Map<CheckedTemplate, GuardFinding[]>(templates.map((t) => [t, []]));
  const unattributed: string[] = [];
  for (const violation of report.violations) {
    const control = CONTROL_ID.exec(violation.description ?? '')?.[1] ?? violation.ruleName;
    for (const resource of violation.violatingResources) {
      const template = templates.find((t) => path.resolve(t.templatePath) === path.resolve(resource.templatePath));
      const logicalId = resource.resourceLogicalId;
      const type = logicalId === undefined ? undefined : template?.template.Resources[logicalId]?.Type;
      if (!template || logicalId === undefined || type === undefined) {
        unattributed.push(`${control} ${resource.templatePath} ${logicalId ?? '(no resource)'}`);
        continue;
      }
      const finding = { control, type, path: template.paths.get(logicalId) ?? logicalId };
      const list = findings.get(template)!;
      // cfn-guard may report a resource once per failing clause.
      if (!list.some((f) => f.control === finding.control && f.path === finding.path)) list.push(finding);
    }
  }
  return { judgements: new Map(templates.map((t) => [t, judgeGuardFindings(findings.get(t)!, t.settings)])), unattributed };
}

// ---- asl-validator

export interface AslResult {
  stateMachine: string;
  errors: string[];
}

/** Each state machine of the template, its definition resolved as the local runtime resolves it, validated. */
export function validateStateMachines(template: CfnTemplate): AslResult[] {
  const names = new LocalNames(template);
  return resourcesOfType(template, 'AWS::StepFunctions::StateMachine').map((stateMachine) => {
    let definition: unknown;
    try {
      definition = resolveDefinition(names, stateMachine);
    } catch (error) {
      return { stateMachine, errors: [`its definition does not resolve: ${(error as Error).message}`] };
    }
    const result = validateAsl(definition);
    return { stateMachine, errors: result.isValid ? [] : result.errorsText('\n').split('\n') };
  });
}

// ---- the check

async function main(): Promise<number> {
  const started = performance.now();
  const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;
  const outdir = mkdtempSync(path.join(tmpdir(), 'batchline-check-deploy-'));
  let failed = false;
  const fail = (line: string) => {
    failed = true;
    console.log(line);
  };
  try {
    let since = performance.now();
    const templates = variants().map(({ name, context }, index) => synthesize(name, context, path.join(outdir, String(index))));
    console.log(`synthesized ${templates.length} templates (${templates.map((t) => t.name).join('; ')}) in ${seconds(since)}`);

    // cfn-lint runs in its own process meanwhile.
    since = performance.now();
    const lint = cfnLint(templates.map((t) => t.templatePath)).then(
      (result) => ({ ...result, seconds: seconds(since) }),
      (error: unknown) => ({ error: error as Error }),
    );

    const guardSince = performance.now();
    const guard = cfnGuard(templates);
    const guardPlugin = require('@cdklabs/cdk-validator-cfnguard/package.json') as { version: string };
    const guardBinary = require('@cdklabs/cdk-validator-cfnguard/guard-version.json') as { version: string };
    let unexplained = 0;
    for (const [template, judgement] of guard.judgements) {
      unexplained += judgement.unexplained.length + judgement.unused.length;
      const controls = new Set(judgement.explained.map(({ exception }) => exception.control));
      console.log(
        `cfn-guard ${guardBinary.version}, Control Tower controls (cdk-validator-cfnguard ${guardPlugin.version}), ${template.name}: ` +
          `${judgement.unexplained.length} unexplained findings; ${controls.size} controls not met, as infra/guard-exceptions.ts explains (${[...controls].sort().join(', ')})`,
      );
      for (const finding of judgement.unexplained)
        fail(`  FINDING ${finding.control} ${finding.path} (${finding.type}): fix it, or explain it in infra/guard-exceptions.ts and infra/README.md`);
      for (const { exception, path: where } of judgement.unused) {
        fail(
          `  UNUSED EXCEPTION ${exception.control} ${where ?? JSON.stringify(exception.resources)}: nothing fails it any more; remove it (and its README row)`,
        );
      }
    }
    for (const line of guard.unattributed) fail(`  UNATTRIBUTED ${line}`);
    if (unexplained === 0 && guard.unattributed.length === 0) console.log(`  cfn-guard passed in ${seconds(guardSince)}`);

    since = performance.now();
    const aslVersion = (require('asl-validator/package.json') as { version: string }).version;
    for (const template of templates) {
      const results = validateStateMachines(template.template);
      if (results.length === 0) fail(`asl-validator ${aslVersion}, ${template.name}: the template has no state machine`);
      for (const { stateMachine, errors } of results) {
        if (errors.length === 0) console.log(`asl-validator ${aslVersion}, ${template.name}: ${stateMachine} is valid ASL`);
        else fail(`asl-validator ${aslVersion}, ${template.name}: ${stateMachine} is not valid ASL:\n${errors.map((e) => `  ${e}`).join('\n')}`);
      }
    }
    console.log(`  asl-validator done in ${seconds(since)}`);

    const linted = await lint;
    if ('error' in linted) {
      fail(`cfn-lint: ${linted.error.message}`);
    } else {
      console.log(`${linted.version}: ${linted.findings.length} findings on ${templates.length} templates (${linted.seconds})`);
      for (const finding of linted.findings) fail(`  ${finding.rule} (${finding.level}) ${finding.where}: ${finding.message}`);
    }
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
  console.log(`check:deploy ${failed ? 'FAILED' : 'passed'} in ${seconds(started)}`);
  return failed ? 1 : 0;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) process.exitCode = await main();
