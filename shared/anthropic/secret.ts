/**
 * The API key from AWS Secrets Manager, read once per container and re-read after a TTL so a
 * rotated key is picked up without a redeploy. The key is never put in an error or a log line.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ApiKeyMissing } from './errors';

/** The secret holds the key as plain text, or as JSON with one of these fields. */
export const API_KEY_FIELDS = ['apiKey', 'api_key', 'ANTHROPIC_API_KEY', 'key'] as const;

export const DEFAULT_SECRET_TTL_MS = 5 * 60 * 1000;

/** What the stack puts in the secret it creates, until the user sets the real key. */
export const API_KEY_PLACEHOLDER = 'replace-me-with-an-anthropic-api-key';

export interface SecretApiKeyOptions {
  /** Default: one client per container, from the environment. */
  client?: Pick<SecretsManagerClient, 'send'>;
  /** How long a read key is reused. Default 5 minutes. */
  ttlMs?: number;
  now?: () => number;
}

interface CacheEntry {
  key: Promise<string>;
  readAt: number;
}

// Per container: every client in the process shares one read per secret per TTL.
const cache = new Map<string, CacheEntry>();
let defaultClient: SecretsManagerClient | undefined;

/** Reads the key now, without the cache. */
export async function readApiKeySecret(secretId: string, client: Pick<SecretsManagerClient, 'send'>): Promise<string> {
  let output;
  try {
    output = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  } catch (err) {
    if (err instanceof Error && err.name === 'ResourceNotFoundException') {
      throw new ApiKeyMissing(`The API key secret "${secretId}" was not found in Secrets Manager`);
    }
    throw err;
  }
  const text = output.SecretString ?? (output.SecretBinary ? Buffer.from(output.SecretBinary).toString('utf8') : undefined);
  const key = text === undefined ? undefined : keyFromSecretText(text);
  if (key === API_KEY_PLACEHOLDER) {
    // Fail before any API call: a 401 from the API would not say which step was missed.
    throw new ApiKeyMissing(
      `The API key secret "${secretId}" still holds the placeholder the stack created; put your key in it ` +
        `(aws secretsmanager put-secret-value --secret-id ${secretId} --secret-string <key>)`,
    );
  }
  if (key === undefined) {
    throw new ApiKeyMissing(`The API key secret "${secretId}" is empty (expected the key as text, or JSON with one of ${API_KEY_FIELDS.join(', ')})`);
  }
  return key;
}

/** The key in a secret's text, or undefined when there is none. */
export function keyFromSecretText(text: string): string | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  if (!trimmed.startsWith('{')) return trimmed;
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    // Not JSON after all: a key never starts with "{", so this is not a usable secret.
    return undefined;
  }
  for (const field of API_KEY_FIELDS) {
    const value = (parsed as Record<string, unknown>)[field];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return undefined;
}

/** A key provider for BatchesClient: cached per container for `ttlMs`; a failed read is not cached. */
export function apiKeyFromSecret(secretId: string, options: SecretApiKeyOptions = {}): () => Promise<string> {
  const ttlMs = options.ttlMs ?? DEFAULT_SECRET_TTL_MS;
  const now = options.now ?? Date.now;
  return () => {
    const cached = cache.get(secretId);
    if (cached && now() - cached.readAt < ttlMs) return cached.key;
    const client = options.client ?? (defaultClient ??= new SecretsManagerClient({}));
    const entry: CacheEntry = { key: readApiKeySecret(secretId, client), readAt: now() };
    cache.set(secretId, entry);
    entry.key.catch(() => {
      if (cache.get(secretId) === entry) cache.delete(secretId);
    });
    return entry.key;
  };
}

/** Forgets every cached key (tests; or after a 401 suggests the key was rotated). */
export function clearApiKeyCache(): void {
  cache.clear();
}
