// Child-process and temp-dir management for the demo, the end-to-end tests and the benchmarks.
// Every child started here (or handed to trackChild) is SIGKILLed when this process exits (normally, via
// process.exit, or on SIGINT/SIGTERM), the onExitSync hooks run (e.g. network namespaces are deleted), and
// every temp dir made here is unmounted (anything mounted below it) and removed.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type StreamName = 'stdout' | 'stderr';
export type LineMatcher = RegExp | ((line: string, stream: StreamName) => boolean);
export type LineListener = (line: string, stream: StreamName) => void;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the child could not be spawned (e.g. ENOENT). */
  error?: Error;
}

export interface SpawnManagedOptions {
  /** Name used in error messages (default: basename of cmd). */
  name?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Append every output line to this file, prefixed with the stream name. */
  logFile?: string;
  /** Also echo lines to this process's stderr (debugging). */
  echo?: boolean;
  /** Called for every line, in order. */
  onLine?: LineListener;
  stdin?: 'ignore' | 'pipe';
  /**
   * Keep this process's event loop alive while the child runs (default false: the child and its pipes
   * are unref'd, so a child a failed test forgot cannot hang the test run; it is killed at exit).
   */
  keepAlive?: boolean;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number | undefined;
  readonly child: ChildProcess;
  readonly stdoutLines: string[];
  readonly stderrLines: string[];
  /** All lines in arrival order. */
  readonly lines: { stream: StreamName; line: string }[];
  /** Resolves (never rejects) once the child has exited and its output is drained. */
  readonly exited: Promise<ExitInfo>;
  /** Set once exited. */
  exitInfo: ExitInfo | undefined;
  readonly running: boolean;
  /** Adds a line listener; returns a function that removes it. */
  onLine(listener: LineListener): () => void;
  /**
   * Resolves with the first line matching. Lines already received count too unless fromNow is set.
   * Rejects on timeout or if the process exits first.
   */
  waitForLine(matcher: LineMatcher, timeoutMs?: number, opts?: { stream?: StreamName; fromNow?: boolean }): Promise<string>;
  /** Sends signal, then SIGKILL after timeoutMs; resolves when the child has exited. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>;
  /** SIGKILL; resolves when the child has exited. */
  kill9(): Promise<ExitInfo>;
  /** Last n lines of output (both streams), for error messages. */
  tail(n?: number): string;
}

const liveChildren = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const exitHooks = new Set<() => void>();
let handlersInstalled = false;

/**
 * Registers synchronous cleanup to run when this process exits or is interrupted, after the children
 * are killed and before the temp dirs are removed. Returns a function that unregisters it.
 */
export function onExitSync(hook: () => void): () => void {
  installHandlers();
  exitHooks.add(hook);
  return () => void exitHooks.delete(hook);
}

function runExitHooksSync(): void {
  for (const hook of [...exitHooks]) {
    exitHooks.delete(hook);
    try {
      hook();
    } catch {
      // best effort: the others must still run
    }
  }
}

function killAllChildrenSync(): void {
  for (const child of liveChildren) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  liveChildren.clear();
}

function removeTempDirsSync(): void {
  for (const dir of tempDirs) removeDirSync(dir);
  tempDirs.clear();
}

function removeDirSync(dir: string): void {
  try {
    unmountUnder(dir);
  } catch {
    // best effort
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
      return;
    } catch {
      // a dying child may still be writing; retry
    }
  }
}

/**
 * Installs the exit and signal handlers now (they are otherwise installed with the first child or temp
 * dir): on SIGINT/SIGTERM the process then kills its children, runs the exit hooks and exits.
 */
export function installExitHandlers(): void {
  installHandlers();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    killAllChildrenSync();
    runExitHooksSync();
    removeTempDirsSync();
  });
  const onSignal = (_signal: NodeJS.Signals, code: number) => {
    killAllChildrenSync();
    runExitHooksSync();
    removeTempDirsSync();
    process.exit(code);
  };
  process.once('SIGINT', () => onSignal('SIGINT', 130));
  process.once('SIGTERM', () => onSignal('SIGTERM', 143));
}

/** SIGKILLs a child spawned elsewhere when this process exits or is interrupted. */
export function trackChild(child: ChildProcess): void {
  track(child);
}

function track(child: ChildProcess): void {
  installHandlers();
  liveChildren.add(child);
  const forget = () => liveChildren.delete(child);
  child.once('exit', forget);
  child.once('error', forget);
}

/** Mount points at or below dir, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  let info: string;
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const root = path.resolve(dir);
  const found: string[] = [];
  for (const row of info.split('\n')) {
    const field = row.split(' ')[4];
    if (field === undefined) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    if (mp === root || mp.startsWith(root + '/')) found.push(mp);
  }
  return found.sort((a, b) => b.length - a.length);
}

/** Unmounts everything mounted at or below dir (lazily if a plain umount fails). Synchronous. */
export function unmountUnder(dir: string): void {
  for (const mp of mountsUnder(dir)) {
    const r = spawnSync('umount', [mp], { stdio: 'ignore', timeout: 10_000 });
    if (r.status !== 0) spawnSync('umount', ['-l', mp], { stdio: 'ignore', timeout: 10_000 });
  }
}

/** Creates a fresh directory under os.tmpdir(); it is removed (after unmounting anything below it) at exit. */
export function makeTempDir(prefix = 'peerpull-'): string {
  installHandlers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by makeTempDir now (unmounting anything below it). */
export function removeTempDir(dir: string): void {
  removeDirSync(dir);
  tempDirs.delete(dir);
}

export function spawnManaged(cmd: string, args: readonly string[], opts: SpawnManagedOptions = {}): ManagedProcess {
  const name = opts.name ?? path.basename(cmd);
  const spawnOpts: SpawnOptions = {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
  };
  const child = spawn(cmd, args, spawnOpts);
  track(child);
  if (!opts.keepAlive) {
    child.unref();
    for (const s of [child.stdout, child.stderr, child.stdin]) (s as { unref?: () => void } | null)?.unref?.();
  }

  const stdoutLines: string[] = [];
  const stderrLines: string[] = [];
  const lines: { stream: StreamName; line: string }[] = [];
  const listeners = new Set<LineListener>();
  if (opts.onLine) listeners.add(opts.onLine);
  const logStream = opts.logFile ? fs.createWriteStream(opts.logFile, { flags: 'a' }) : undefined;

  const emit = (stream: StreamName, line: string) => {
    (stream === 'stdout' ? stdoutLines : stderrLines).push(line);
    lines.push({ stream, line });
    logStream?.write(`[${stream}] ${line}\n`);
    if (opts.echo) process.stderr.write(`[${name} ${stream}] ${line}\n`);
    for (const l of [...listeners]) {
      try {
        l(line, stream);
      } catch {
        // a broken listener must not break capture
      }
    }
  };

  const pending: Record<StreamName, string> = { stdout: '', stderr: '' };
  const ended: Record<StreamName, boolean> = { stdout: false, stderr: false };
  const attach = (stream: StreamName) => {
    const s = stream === 'stdout' ? child.stdout : child.stderr;
    if (!s) {
      ended[stream] = true;
      return;
    }
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      const parts = (pending[stream] + chunk).split('\n');
      pending[stream] = parts.pop() ?? '';
      for (const p of parts) emit(stream, p.endsWith('\r') ? p.slice(0, -1) : p);
    });
    s.on('end', () => {
      if (pending[stream] !== '') emit(stream, pending[stream]);
      pending[stream] = '';
      ended[stream] = true;
    });
    s.on('error', () => {
      ended[stream] = true;
    });
  };
  attach('stdout');
  attach('stderr');

  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    let settled = false;
    const finish = (info: ExitInfo) => {
      if (settled) return;
      settled = true;
      for (const stream of ['stdout', 'stderr'] as const) {
        if (pending[stream] !== '') emit(stream, pending[stream]);
        pending[stream] = '';
      }
      exitInfo = info;
      handle.exitInfo = info;
      logStream?.end();
      resolve(info);
    };
    child.once('error', (error) => {
      // spawn failure: no 'exit' follows
      if (child.pid === undefined) finish({ code: null, signal: null, error });
    });
    child.once('close', (code, signal) => finish({ code, signal }));
    child.once('exit', (code, signal) => {
      // grandchildren may keep the pipes open: do not wait for 'close' forever
      setTimeout(() => finish({ code, signal }), 1000).unref();
    });
  });

  const tail = (n = 30) =>
    lines
      .slice(-n)
      .map((l) => `  [${l.stream}] ${l.line}`)
      .join('\n');

  const matches = (m: LineMatcher, line: string, stream: StreamName) =>
    typeof m === 'function' ? m(line, stream) : (m.lastIndex = 0, m.test(line));

  const waitForLine: ManagedProcess['waitForLine'] = (matcher, timeoutMs = 15_000, wopts = {}) => {
    const want = (stream: StreamName) => wopts.stream === undefined || wopts.stream === stream;
    if (!wopts.fromNow) {
      for (const l of lines) if (want(l.stream) && matches(matcher, l.line, l.stream)) return Promise.resolve(l.line);
    }
    if (exitInfo) {
      return Promise.reject(new Error(`${name} exited (${describeExit(exitInfo)}) before printing ${String(matcher)}\n${tail()}`));
    }
    return new Promise<string>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(listener);
      };
      const listener: LineListener = (line, stream) => {
        if (want(stream) && matches(matcher, line, stream)) {
          cleanup();
          resolve(line);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${String(matcher)}\n${tail()}`));
      }, timeoutMs);
      listeners.add(listener);
      void exited.then((info) => {
        if (!listeners.has(listener)) return;
        cleanup();
        reject(new Error(`${name} exited (${describeExit(info)}) before printing ${String(matcher)}\n${tail()}`));
      });
    });
  };

  const signalChild = (sig: NodeJS.Signals) => {
    if (exitInfo || child.exitCode !== null || child.signalCode !== null) return;
    try {
      child.kill(sig);
    } catch {
      // gone
    }
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<ExitInfo> => {
    if (exitInfo) return exitInfo;
    signalChild(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    const first = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (first === 'timeout') {
      signalChild('SIGKILL');
      return exited;
    }
    return first;
  };

  const handle: ManagedProcess = {
    name,
    pid: child.pid,
    child,
    stdoutLines,
    stderrLines,
    lines,
    exited,
    exitInfo: undefined,
    get running() {
      return exitInfo === undefined && child.exitCode === null && child.signalCode === null;
    },
    onLine(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    waitForLine,
    stop,
    kill9: () => stop('SIGKILL', 5_000),
    tail,
  };
  return handle;
}

export function describeExit(info: ExitInfo): string {
  if (info.error) return `spawn error: ${info.error.message}`;
  if (info.signal) return `signal ${info.signal}`;
  return `code ${info.code}`;
}

export interface RunOptions {
  /** The child is SIGKILLed after this long (default 120 s). */
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  /** Resolve instead of rejecting on a non-zero exit. */
  allowFailure?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exact stdout bytes. */
  stdoutBuffer: Buffer;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Runs a command to completion, capturing its exact output. Rejects with an Error that includes stderr. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    track(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const cmdline = [cmd, ...args].join(' ');
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmdline}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBuffer = Buffer.concat(out);
      const result: RunResult = {
        stdout: stdoutBuffer.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBuffer,
        code,
        signal,
      };
      if (timedOut) {
        reject(new Error(`${cmdline}: timed out after ${timeoutMs} ms\nstderr:\n${result.stderr.trim()}`));
      } else if (code !== 0 && !opts.allowFailure) {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        reject(new Error(`${cmdline}: failed (${how})\nstderr:\n${result.stderr.trim()}`));
      } else {
        resolve(result);
      }
    });
  });
}
