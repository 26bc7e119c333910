/** What the package exports: the Batchline construct and its props (infra/README.md). */
export {
  Batchline,
  type BatchlineInfraProps,
  type BatchlinePipelineProps,
  type BatchlinePrefixProps,
  type BatchlineProps,
  type EncryptionKeySetting,
  type Prefixes,
  type ScheduleSetting,
} from './batchline';
export { STACK_OUTPUTS } from './metadata';
