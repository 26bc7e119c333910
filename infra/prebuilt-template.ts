/**
 * The template a package ships (scripts/build.ts writes it): the default stack, synthesized at
 * build time, so the installed CLI runs locally without the CDK (aws-cdk-lib is 160 MB). Settings
 * given at run time (BATCHLINE_* variables) are what the functions are told: they are applied to
 * the shipped template as the construct would (functions.ts), after the one settings reader checks
 * them. Free of aws-cdk-lib, like metadata.ts.
 */
import { HANDLER_METADATA } from './metadata';
import { CONTEXT_KEYS, readSettings, SettingsError, type BatchlineSettings } from './settings';

/** Beside the built code (the package's dist/). */
export const PREBUILT_TEMPLATE_FILE = 'template.json';

export interface PrebuiltTemplate {
  /** The context the template was synthesized with (the project's cdk.json at build time). */
  context: Record<string, unknown>;
  template: { Resources: Record<string, { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }> };
}

/**
 * The shipped template with the run's context applied. Only the settings the functions read can
 * differ from the context it was built with: anything else needs the CDK app (a clone). The
 * prefixes are among the stack's (the trigger rule filters on the inbox), so they are refused here.
 */
export function applyContext(prebuilt: PrebuiltTemplate, context: Record<string, unknown>): PrebuiltTemplate['template'] {
  for (const key of new Set([...Object.keys(context), ...Object.keys(prebuilt.context)])) {
    if (key === CONTEXT_KEYS.settings) continue;
    if (JSON.stringify(context[key]) !== JSON.stringify(prebuilt.context[key])) {
      throw new SettingsError(`${key} cannot be changed in an installed batchline: it ships the default stack's template (clone the repository to change it)`);
    }
  }
  const given = readSettings((key) => context[key]);
  const built = readSettings((key) => prebuilt.context[key]);
  const stackPart = (settings: BatchlineSettings) => JSON.stringify({ ...settings, pipelineEnv: undefined, apiEnv: undefined });
  if (stackPart(given) !== stackPart(built)) {
    throw new SettingsError(
      `${CONTEXT_KEYS.settings}: only the pipeline's settings can be changed in an installed batchline, not the stack's (clone the repository to change them)`,
    );
  }
  const template = structuredClone(prebuilt.template);
  for (const resource of Object.values(template.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function' || resource.Metadata?.[HANDLER_METADATA] === undefined) continue;
    const environment = (resource.Properties?.Environment ?? {}) as { Variables?: Record<string, unknown> };
    const variables = environment.Variables ?? {};
    // As functions.ts: every function gets the pipeline's settings, the ones that call the API (given
    // the key's secret) the API's. Over the built ones: the same or more keys, since all come from the run's context.
    Object.assign(variables, given.pipelineEnv, 'BATCHLINE_API_KEY_SECRET' in variables ? given.apiEnv : {});
  }
  return template;
}
