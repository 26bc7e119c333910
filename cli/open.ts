/** Opening a file the way the desktop does (`results --open`): xdg-open on Linux, open on macOS. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';

const OPENERS: Partial<Record<NodeJS.Platform, string>> = { linux: 'xdg-open', darwin: 'open', freebsd: 'xdg-open', openbsd: 'xdg-open' };

/** The opener's path on PATH, if this platform has one and it is installed. */
async function findOpener(env: Record<string, string | undefined>, platform: NodeJS.Platform): Promise<string | undefined> {
  const name = OPENERS[platform];
  if (!name) return undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Hands `file` to the desktop's opener and returns its name once it has started (it runs on
 * detached, as a browser would); undefined when there is none, so the caller prints the path instead.
 */
export async function openWithDesktop(file: string, env: Record<string, string | undefined>, platform = process.platform): Promise<string | undefined> {
  const opener = await findOpener(env, platform);
  if (!opener) return undefined;
  const child = spawn(opener, [file], { detached: true, stdio: 'ignore', env });
  try {
    await once(child, 'spawn');
  } catch {
    return undefined;
  }
  child.unref();
  return path.basename(opener);
}
