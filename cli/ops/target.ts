/**
 * Which stack the operating commands talk to: a deployed one, found by its CloudFormation outputs
 * with the standard AWS credential chain, or a local one that `batchline serve` runs (found by its
 * state file, see ./local-state.ts).
 *
 *   --local DIR  >  --stack NAME  >  BATCHLINE_LOCAL  >  BATCHLINE_STACK  >  stack "Batchline"
 */
import { CloudFormationClient, DescribeStacksCommand, type Stack } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import type { QueryDeps } from '../../shared/jobs/queries';
import { localDynamoClient, localS3Client } from '../../local/emulators';
import { UsageError } from '../args';
import type { Io } from '../io';
import { readLocalState } from './local-state';
import { STACK_NAME, STACK_OUTPUTS } from '../../infra/metadata';
import { DEFAULT_PREFIXES, prefixesProblem, type Prefixes } from '../../shared/config';

/** The name infra/app.ts deploys the stack as (STACK_NAME there; not imported, as that loads the CDK). */
export const DEFAULT_STACK = STACK_NAME;

export const TARGET_OPTIONS = {
  stack: { type: 'string' },
  local: { type: 'string' },
} as const;

export const TARGET_HELP = `  --stack NAME       the deployed stack (default ${DEFAULT_STACK}, or BATCHLINE_STACK); AWS
                     credentials and region come from the standard chain (AWS_PROFILE, ...)
  --local DIR        the local stack "batchline serve" runs in DIR (or BATCHLINE_LOCAL)`;

export interface Target extends QueryDeps {
  kind: 'stack' | 'local';
  /** Where in the bucket the stack keeps inputs, work files and outputs (its outputs say; older stacks: the defaults). */
  prefixes: Prefixes;
  /** For messages: `stack Batchline (eu-west-1)`, `the local stack in DIR`. */
  label: string;
  /** The flags that name this target again in a suggested command ('' when the default or env does). */
  flags: string;
  close(): void;
}

/** The stack does not exist in the region, or is not a batchline stack. */
export class StackNotFound extends Error {
  override readonly name = 'StackNotFound';
}

export async function resolveTarget(values: { stack?: unknown; local?: unknown }, io: Io): Promise<Target> {
  // The SDK's notice about Node 20 support would interleave with the command's output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const stack = values.stack as string | undefined;
  const local = values.local as string | undefined;
  if (stack !== undefined && local !== undefined) throw new UsageError('give --stack or --local, not both');
  if (local !== undefined) return localTarget(path.resolve(io.cwd, local), ` --local ${quoteArg(local)}`);
  if (stack !== undefined) return stackTarget(stack, { flags: ` --stack ${quoteArg(stack)}` });
  const envLocal = io.env.BATCHLINE_LOCAL?.trim();
  if (envLocal) return localTarget(path.resolve(io.cwd, envLocal), '');
  return stackTarget(io.env.BATCHLINE_STACK?.trim() || DEFAULT_STACK, { flags: '' });
}

/**
 * A deployed stack's bucket, table and prefixes from its outputs. The clients use the standard chain for
 * credentials and region; `cloudFormation` replaces the default client (tests point one at a stub).
 */
export async function stackTarget(stackName: string, options: { flags?: string; cloudFormation?: CloudFormationClient } = {}): Promise<Target> {
  const cloudFormation = options.cloudFormation ?? new CloudFormationClient({});
  let region = '';
  let found: Stack | undefined;
  try {
    region = await cloudFormation.config.region();
    found = (await cloudFormation.send(new DescribeStacksCommand({ StackName: stackName }))).Stacks?.[0];
  } catch (error) {
    const err = error as Error;
    if (err.name !== 'ValidationError' || !/does not exist/.test(err.message)) throw error;
  } finally {
    if (!options.cloudFormation) cloudFormation.destroy();
  }
  if (!found) {
    throw new StackNotFound(`stack ${stackName} was not found in ${region} (deploy it with "npx cdk deploy", or name yours with --stack / BATCHLINE_STACK)`);
  }
  const output = (key: string) => found.Outputs?.find((o) => o.OutputKey === key)?.OutputValue;
  const bucket = output(STACK_OUTPUTS.bucket);
  const table = output(STACK_OUTPUTS.table);
  if (!bucket || !table) {
    const missing = [bucket ? undefined : STACK_OUTPUTS.bucket, table ? undefined : STACK_OUTPUTS.table].filter(Boolean).join(' and ');
    throw new StackNotFound(`stack ${stackName} (${found.StackStatus ?? 'unknown status'}) has no ${missing} output: is it a batchline stack?`);
  }
  // A stack deployed before the prefixes were settings has no such outputs: it uses the defaults.
  const prefixes: Prefixes = {
    inbox: output(STACK_OUTPUTS.inboxPrefix) ?? DEFAULT_PREFIXES.inbox,
    work: output(STACK_OUTPUTS.workPrefix) ?? DEFAULT_PREFIXES.work,
    results: output(STACK_OUTPUTS.resultsPrefix) ?? DEFAULT_PREFIXES.results,
  };
  const wrong = prefixesProblem(prefixes);
  if (wrong) throw new StackNotFound(`stack ${stackName}'s ${wrong.which} prefix output ${wrong.problem}: is it a batchline stack?`);
  const s3 = new S3Client({ region });
  const dynamo = new DynamoDBClient({ region });
  return {
    kind: 'stack',
    label: `stack ${stackName} (${region})`,
    flags: options.flags ?? '',
    s3,
    dynamo,
    bucket,
    table,
    prefixes,
    close() {
      s3.destroy();
      dynamo.destroy();
    },
  };
}

/** The local stack serving in `dir` (its folder, or its state file). */
export async function localTarget(location: string, flags = ''): Promise<Target> {
  const state = await readLocalState(location);
  const s3 = localS3Client(state.s3Endpoint);
  const dynamo = localDynamoClient(state.dynamodbEndpoint);
  return {
    kind: 'local',
    label: `the local stack in ${location}`,
    flags,
    s3,
    dynamo,
    bucket: state.bucket,
    table: state.table,
    prefixes: state.prefixes,
    close() {
      s3.destroy();
      dynamo.destroy();
    },
  };
}

const quoteArg = (value: string) => (/^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`);
