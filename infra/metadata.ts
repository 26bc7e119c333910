/**
 * Template metadata each function carries, written by infra/handler.ts and read by the local
 * runtime to find a handler's source. A module of its own, free of aws-cdk-lib, so a local start
 * from a cached template does not load the CDK.
 */
export const ENTRY_METADATA = 'batchline:entry';
export const HANDLER_METADATA = 'batchline:handler';
