/**
 * Names the stack and its readers share: the template metadata each function carries (written by
 * infra/handler.ts, read by the local runtime to find a handler's source), the stack's default name
 * and its output keys (read by the CLI). A module of its own, free of aws-cdk-lib, so a local start
 * from a cached template and the CLI do not load the CDK.
 */
export const ENTRY_METADATA = 'batchline:entry';
export const HANDLER_METADATA = 'batchline:handler';

/** The stack's name unless the app is told otherwise. */
export const STACK_NAME = 'Batchline';

/** CloudFormation output keys of the stack. */
export const STACK_OUTPUTS = {
  bucket: 'BucketName',
  inbox: 'InboxUri',
  inboxPrefix: 'InboxPrefix',
  workPrefix: 'WorkPrefix',
  resultsPrefix: 'ResultsPrefix',
  table: 'TableName',
  stateMachine: 'StateMachineArn',
  topic: 'TopicArn',
  dashboard: 'DashboardName',
  apiKeySecret: 'ApiKeySecretName',
} as const;
