/**
 * The CDK app (cdk.json runs this file). Other code builds the same app in-process with
 * `buildApp` (bundling off: templates only, a few seconds) and reads the template it synthesizes.
 * `-c batchline:nag=true` adds the cdk-nag checks to `cdk synth`/`deploy` (addNagChecks).
 */
import { App, Validations } from 'aws-cdk-lib';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BatchlineStack, type BatchlineStackProps } from './batchline-stack';
import { PROJECT_ROOT } from './handler';
import { STACK_NAME } from './metadata';
import { readNagSetting } from './settings';

export { STACK_NAME };

/** A synthesized CloudFormation template, as far as readers of it need to know. */
export interface SynthesizedTemplate {
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }>;
  Outputs?: Record<string, { Value: unknown; Description?: string }>;
}
const BUNDLING_STACKS = 'aws:cdk:bundling-stacks';

export interface BuildAppOptions {
  /** Context values, as in cdk.json's "context" (see readProjectContext). Default: none. */
  context?: Record<string, unknown>;
  /** Run esbuild for every function. Default true; false synthesizes templates only. */
  bundling?: boolean;
  /**
   * Check the template with CDK's built-in CloudFormation validator (seconds of WASM per synth).
   * Default: on when bundling, off for templates only.
   */
  cfnValidation?: boolean;
  /** Where the cloud assembly goes. Default: the CLI's, or a fresh temporary directory. */
  outdir?: string;
  stackName?: string;
}

export function buildApp(options: BuildAppOptions = {}): { app: App; stack: BatchlineStack } {
  const context = { ...options.context };
  if (options.bundling === false) context[BUNDLING_STACKS] = [];
  const app = new App({
    context,
    outdir: options.outdir,
    builtinCloudFormationValidation: options.cfnValidation ?? options.bundling !== false,
  });
  const stack = buildStack(app, { stackName: options.stackName });
  return { app, stack };
}

export function buildStack(app: App, props: BatchlineStackProps & { stackName?: string } = {}): BatchlineStack {
  const { stackName = STACK_NAME, ...rest } = props;
  return new BatchlineStack(app, stackName, rest);
}

/** Synthesizes the app and returns the stack's CloudFormation template. */
export function synthTemplate(options: BuildAppOptions = {}): SynthesizedTemplate {
  const { app, stack } = buildApp(options);
  return app.synth().getStackByName(stack.stackName).template as SynthesizedTemplate;
}

/**
 * Registers cdk-nag's AwsSolutions checks: synthesis then fails on any finding not acknowledged
 * next to its resource (infra/nag.ts). cdk-nag is a devDependency, so it loads only when asked for.
 */
export async function addNagChecks(app: App): Promise<void> {
  const { AwsSolutionsChecks } = await import('cdk-nag');
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
}

/** The "context" of the project's cdk.json, which the CDK CLI passes to the app by itself. */
export function readProjectContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'cdk.json'), 'utf8')) as { context?: Record<string, unknown> };
  return cdkJson.context ?? {};
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  const { app } = buildApp();
  if (readNagSetting((key) => app.node.tryGetContext(key))) await addNagChecks(app);
  app.synth();
}
