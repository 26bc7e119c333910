/**
 * The key from Secrets Manager, read with the real AWS SDK client. No Secrets Manager emulator is
 * part of the local stack, so a tiny node:http server answers GetSecretValue in the service's own
 * JSON protocol (`x-amz-target: secretsmanager.GetSecretValue`).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ApiKeyMissing } from '../../shared/anthropic/errors';
import { createBatchesClientFromEnv } from '../../shared/anthropic/from-env';
import { API_KEY_PLACEHOLDER, apiKeyFromSecret, clearApiKeyCache, keyFromSecretText } from '../../shared/anthropic/secret';

const secrets = new Map<string, string>();
const reads: string[] = [];
let server: Server;
let client: SecretsManagerClient;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const target = req.headers['x-amz-target'];
      const { SecretId } = JSON.parse(body) as { SecretId: string };
      reads.push(SecretId);
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      const value = secrets.get(SecretId);
      if (target !== 'secretsmanager.GetSecretValue' || value === undefined) {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: "Secrets Manager can't find the specified secret." }));
        return;
      }
      res.end(JSON.stringify({ ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${SecretId}`, Name: SecretId, SecretString: value }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  client = new SecretsManagerClient({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
});

afterAll(async () => {
  client.destroy();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  clearApiKeyCache();
  secrets.clear();
  reads.length = 0;
});

describe('keyFromSecretText', () => {
  it('takes plain text or a JSON field, and nothing from an empty or keyless secret', () => {
    expect(keyFromSecretText('  sk-ant-1\n')).toBe('sk-ant-1');
    expect(keyFromSecretText('{"ANTHROPIC_API_KEY":"sk-ant-2"}')).toBe('sk-ant-2');
    expect(keyFromSecretText('{"apiKey":" sk-ant-3 "}')).toBe('sk-ant-3');
    expect(keyFromSecretText('   ')).toBeUndefined();
    expect(keyFromSecretText('{"other":"x"}')).toBeUndefined();
    expect(keyFromSecretText('{not json')).toBeUndefined();
  });
});

describe('apiKeyFromSecret', () => {
  it('reads the secret once per TTL and again after it', async () => {
    secrets.set('batchline/api-key', 'sk-ant-first');
    let now = 1_000;
    const key = apiKeyFromSecret('batchline/api-key', { client, ttlMs: 60_000, now: () => now });
    expect(await key()).toBe('sk-ant-first');
    secrets.set('batchline/api-key', 'sk-ant-rotated');
    now += 59_999;
    expect(await key()).toBe('sk-ant-first');
    now += 1;
    expect(await key()).toBe('sk-ant-rotated');
    expect(reads).toEqual(['batchline/api-key', 'batchline/api-key']);
  });

  it('shares one read between concurrent callers', async () => {
    secrets.set('s', 'sk-ant-x');
    const key = apiKeyFromSecret('s', { client });
    expect(await Promise.all([key(), key(), key()])).toEqual(['sk-ant-x', 'sk-ant-x', 'sk-ant-x']);
    expect(reads).toEqual(['s']);
  });

  it('fails with ApiKeyMissing naming the secret when it does not exist, and does not cache the failure', async () => {
    const key = apiKeyFromSecret('missing/secret', { client });
    const error = await key().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiKeyMissing);
    expect((error as Error).name).toBe('ApiKeyMissing');
    expect((error as Error).message).toBe('The API key secret "missing/secret" was not found in Secrets Manager');
    secrets.set('missing/secret', 'sk-ant-now-here');
    expect(await key()).toBe('sk-ant-now-here');
  });

  it('fails with ApiKeyMissing, saying how to set it, while the secret holds the placeholder the stack created', async () => {
    secrets.set('fresh', API_KEY_PLACEHOLDER);
    const error = (await apiKeyFromSecret('fresh', { client })().catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(ApiKeyMissing);
    expect(error.message).toBe(
      'The API key secret "fresh" still holds the placeholder the stack created; put your key in it ' +
        '(aws secretsmanager put-secret-value --secret-id fresh --secret-string <key>)',
    );
  });

  it('fails with ApiKeyMissing when the secret is empty, without quoting its value', async () => {
    secrets.set('empty', '{"other":"sk-ant-wrong-field"}');
    const error = (await apiKeyFromSecret('empty', { client })().catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(ApiKeyMissing);
    expect(error.message).toContain('"empty" is empty');
    expect(JSON.stringify(error) + error.message + error.stack).not.toContain('sk-ant-wrong-field');
  });
});

describe('createBatchesClientFromEnv', () => {
  it('takes its settings from readApiConfig and its key from the named secret, lazily', async () => {
    const api = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ seen: req.headers['x-api-key'], version: req.headers['anthropic-version'], url: req.url }));
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/`;
    const batches = createBatchesClientFromEnv({
      env: { ANTHROPIC_BASE_URL: baseUrl, ANTHROPIC_VERSION: '2026-10-21', BATCHLINE_API_KEY_SECRET: 'prod/key', BATCHLINE_API_MAX_RETRIES: '0' },
      secrets: client,
    });
    try {
      expect(batches.baseUrl).toBe(baseUrl.slice(0, -1));
      expect(batches.maxRetries).toBe(0);
      expect(reads).toEqual([]);
      await expect(batches.retrieve('msgbatch_1')).rejects.toBeInstanceOf(ApiKeyMissing);
      secrets.set('prod/key', 'sk-ant-from-secret');
      expect(await batches.retrieve('msgbatch_1')).toEqual({
        seen: 'sk-ant-from-secret',
        version: '2026-10-21',
        url: '/v1/messages/batches/msgbatch_1',
      });
    } finally {
      await batches.close();
      await new Promise((resolve) => api.close(resolve));
    }
  });
});
