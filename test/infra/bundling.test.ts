import { App, Duration, Stack } from 'aws-cdk-lib';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Handler } from '../../infra/handler';

const outdir = mkdtempSync(path.join(tmpdir(), 'batchline-bundling-'));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe('bundling', () => {
  // The heaviest handler (S3, DynamoDB, the API client): if it bundles, they all do.
  it('builds a handler with the local esbuild, without Docker, into a CommonJS bundle with a source map', () => {
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new Stack(app, 'BundlingCheck');
    new Handler(stack, 'Collect', { name: 'collect-results', description: 'bundling check', memorySize: 128, timeout: Duration.seconds(3) });
    app.synth();

    const assets = readdirSync(outdir).filter((name) => name.startsWith('asset.') && existsSync(path.join(outdir, name, 'index.js')));
    expect(assets).toHaveLength(1);
    const bundle = path.join(outdir, assets[0]!);
    expect(readdirSync(bundle).sort()).toEqual(['index.js', 'index.js.map']);
    expect(readFileSync(path.join(bundle, 'index.js'), 'utf8')).toMatch(/\/\/# sourceMappingURL=index\.js\.map\s*$/);

    // Loaded from a directory with no node_modules above it: everything it needs, the AWS SDK
    // included, is in the bundle.
    const bundled = createRequire(path.join(bundle, 'index.js'));
    const saved = { ...process.env };
    Object.assign(process.env, { BATCHLINE_BUCKET: 'b', BATCHLINE_TABLE: 't', BATCHLINE_API_KEY_SECRET: 's', AWS_REGION: 'us-east-1' });
    try {
      const loaded = bundled(path.join(bundle, 'index.js')) as { handler?: unknown };
      expect(typeof loaded.handler).toBe('function');
    } finally {
      process.env = saved;
    }
  }, 90_000);
});
