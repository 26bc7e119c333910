/**
 * A real headless browser for the tests of pages batchline writes (summary.html): Chromium from
 * Debian's packages, installed here if it is missing and this process may install it (root with
 * apt-get), driven over the Chrome DevTools Protocol (a WebSocket; undici's client, already a
 * dependency). Where it cannot be had, `findChromium` says why, and the tests skip saying so.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { WebSocket } from 'undici';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome'];

function onPath(name: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() || undefined : undefined;
}

/** The browser's path, installing Debian's chromium when it is missing; or why there is none. */
export function findChromium(): { path: string } | { skip: string } {
  const given = process.env.BATCHLINE_TEST_CHROMIUM;
  if (given) return { path: given };
  for (const name of NAMES) {
    const found = onPath(name);
    if (found) return { path: found };
  }
  if (process.platform !== 'linux' || !onPath('apt-get')) return { skip: 'no Chromium on PATH, and no apt-get to install it (set BATCHLINE_TEST_CHROMIUM)' };
  if (process.getuid?.() !== 0) return { skip: 'no Chromium on PATH, and installing it needs root (apt-get install chromium, or set BATCHLINE_TEST_CHROMIUM)' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { encoding: 'utf8', env });
  if (install.status !== 0) {
    spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
    install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { encoding: 'utf8', env });
  }
  const found = onPath('chromium');
  if (install.status !== 0 || !found)
    return { skip: `Chromium could not be installed: apt-get install chromium exited ${install.status}: ${install.stderr.trim().split('\n').pop()}` };
  return { path: found };
}

/** What a page did while it loaded and what it shows. */
export interface PageVisit {
  /** console messages, log entries (errors and warnings: blocked resources, CSP) and uncaught exceptions. */
  problems: string[];
  /** Every network request the page made (the file itself included). */
  requests: string[];
  /** The value of `expression`, evaluated in the loaded page. */
  value: unknown;
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** Loads `url` in a fresh headless Chromium and evaluates `expression` (returning JSON-able data) once it has loaded. */
export async function visitPage(chromium: string, url: string, expression: string): Promise<PageVisit> {
  const profile = await mkdtemp(path.join(tmpdir(), 'batchline-chromium-'));
  const browser = spawn(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-extensions',
      '--remote-debugging-port=0',
      `--user-data-dir=${profile}`,
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  try {
    const endpoint = await devToolsEndpoint(browser);
    const targets = (await (await fetch(`http://${endpoint}/json/list`)).json()) as Array<{ type: string; webSocketDebuggerUrl: string }>;
    const page = targets.find((target) => target.type === 'page');
    if (!page) throw new Error('Chromium opened no page');
    return await drive(page.webSocketDebuggerUrl, url, expression);
  } finally {
    browser.kill('SIGKILL');
    if (browser.exitCode === null) await once(browser, 'exit');
    await rm(profile, { recursive: true, force: true });
  }
}

/** host:port of the DevTools server, from the line Chromium prints when it listens. */
async function devToolsEndpoint(browser: ChildProcess): Promise<string> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      const match = /DevTools listening on ws:\/\/([^/\s]+)\//.exec(seen);
      if (match) {
        browser.stderr!.off('data', onData);
        // Chromium keeps writing to stderr: it must be read, or the pipe fills and the browser stalls.
        browser.stderr!.resume();
        resolve(match[1]!);
      }
    };
    browser.stderr!.on('data', onData);
    browser.once('exit', (code) => reject(new Error(`Chromium exited (${code}) before it listened: ${seen.slice(-500)}`)));
  });
}

async function drive(socketUrl: string, url: string, expression: string): Promise<PageVisit> {
  const socket = new WebSocket(socketUrl);
  await once(socket as unknown as EventTarget, 'open');
  let nextId = 0;
  const pending = new Map<number, { resolve: (result: Record<string, unknown>) => void; reject: (error: Error) => void }>();
  const problems: string[] = [];
  const requests: string[] = [];
  let loaded: () => void = () => undefined;
  const load = new Promise<void>((resolve) => (loaded = resolve));
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as CdpMessage;
    if (message.id !== undefined) {
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result ?? {});
      return;
    }
    const params = message.params ?? {};
    switch (message.method) {
      case 'Page.loadEventFired':
        loaded();
        break;
      case 'Runtime.consoleAPICalled':
        problems.push(`console.${String(params.type)}: ${JSON.stringify(params.args)}`);
        break;
      case 'Runtime.exceptionThrown':
        problems.push(`exception: ${JSON.stringify(params.exceptionDetails)}`);
        break;
      case 'Log.entryAdded': {
        const entry = params.entry as { level: string; text: string; url?: string };
        if (entry.level === 'error' || entry.level === 'warning') problems.push(`${entry.level}: ${entry.text}${entry.url ? ` (${entry.url})` : ''}`);
        break;
      }
      case 'Network.requestWillBeSent':
        requests.push(String((params.request as { url: string }).url));
        break;
      case 'Network.loadingFailed':
        problems.push(`request failed: ${String(params.errorText)}`);
        break;
    }
  });
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  try {
    for (const domain of ['Page', 'Runtime', 'Log', 'Network']) await send(`${domain}.enable`);
    await send('Page.navigate', { url });
    await load;
    const evaluated = await send('Runtime.evaluate', { expression, returnByValue: true });
    if (evaluated.exceptionDetails) throw new Error(`the expression threw: ${JSON.stringify(evaluated.exceptionDetails)}`);
    return { problems, requests, value: (evaluated.result as { value?: unknown }).value };
  } finally {
    socket.close();
  }
}
