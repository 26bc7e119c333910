/**
 * Pipeline settings from the caller's environment, for a local run: `BATCHLINE_MAX_REQUESTS_PER_CHUNK=50
 * npx batchline run ...` becomes the stack setting `maxRequestsPerChunk`, so the local template is
 * the one a deploy with that setting would create (and the synth checks the value). The prefixes too:
 * `BATCHLINE_RESULTS_PREFIX=team/out/` runs the job with its outputs under team/out/<jobId>/.
 */
import { API_SETTING_ENV, PIPELINE_SETTING_ENV, PREFIX_SETTING_ENV } from '../infra/settings';

export const SETTING_VARIABLES: Readonly<Record<string, string>> = { ...PIPELINE_SETTING_ENV, ...API_SETTING_ENV, ...PREFIX_SETTING_ENV };

export function settingsFromEnv(env: Record<string, string | undefined>): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const [setting, variable] of Object.entries(SETTING_VARIABLES)) {
    const value = env[variable];
    if (value !== undefined && value.trim() !== '') settings[setting] = value.trim();
  }
  return settings;
}
