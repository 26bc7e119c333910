/**
 * The client as a handler builds it, once per container, outside the handler: settings from
 * readApiConfig(), the key from Secrets Manager (read lazily, on the first call, so a missing secret
 * fails that call with ApiKeyMissing instead of the container's start).
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { readApiConfig } from '../config';
import { BatchesClient, type BatchesClientOptions } from './client';
import { apiKeyFromSecret } from './secret';

export interface ClientFromEnvOptions {
  env?: Record<string, string | undefined>;
  /** The Secrets Manager client to read the key with (default: one from the environment). */
  secrets?: Pick<SecretsManagerClient, 'send'>;
  /** Anything else (tests inject sleep; the local runtime may give a key directly). */
  overrides?: Partial<BatchesClientOptions>;
}

export function createBatchesClientFromEnv(options: ClientFromEnvOptions = {}): BatchesClient {
  const config = readApiConfig(options.env);
  return new BatchesClient({
    apiKey: apiKeyFromSecret(config.apiKeySecret, options.secrets ? { client: options.secrets } : {}),
    baseUrl: config.baseUrl,
    anthropicVersion: config.anthropicVersion,
    maxRetries: config.maxRetries,
    timeoutMs: config.timeoutMs,
    ...options.overrides,
  });
}
