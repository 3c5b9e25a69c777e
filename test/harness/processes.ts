import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { once } from 'node:events';

export interface RunAs {
  uid: number;
  gid: number;
}

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  runAs?: RunAs;
  env?: NodeJS.ProcessEnv;
}

let setprivAvailable: boolean | undefined;

function hasSetpriv(): boolean {
  if (setprivAvailable === undefined) {
    try {
      execFileSync('setpriv', ['--help'], { stdio: 'ignore' });
      setprivAvailable = true;
    } catch {
      setprivAvailable = false;
    }
  }
  return setprivAvailable;
}

/**
 * A server process of the harness. Started through setpriv with a parent-death
 * signal, so it dies with the harness even when the harness is SIGKILLed, and in
 * its own process group so that freezing or stopping it reaches all its workers.
 */
export class ManagedProcess {
  readonly spec: ProcessSpec;
  private child: ChildProcess | undefined;
  private exited: Promise<unknown> | undefined;

  constructor(spec: ProcessSpec) {
    this.spec = spec;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.running) throw new Error(`${this.spec.name} is already running`);
    const { command, args, runAs } = this.spec;
    const prefix: string[] = [];
    if (hasSetpriv()) {
      prefix.push('setpriv');
      if (runAs !== undefined) prefix.push(`--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--clear-groups');
      prefix.push('--pdeathsig=KILL', '--');
    } else if (runAs !== undefined) {
      throw new Error(`${this.spec.name} must run as uid ${runAs.uid} but setpriv (util-linux) is not installed`);
    }
    const argv = [...prefix, command, ...args];
    const log = openSync(this.spec.logFile, 'a');
    try {
      const [file, ...rest] = argv as [string, ...string[]];
      this.child = spawn(file, rest, { stdio: ['ignore', log, log], detached: true, env: this.spec.env ?? process.env });
    } finally {
      closeSync(log);
    }
    const child = this.child;
    this.exited = once(child, 'exit').catch(() => undefined);
    child.on('error', () => undefined);
  }

  private signal(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined || !this.running) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone: nothing to signal.
    }
  }

  /** SIGSTOP: an honest hung server — connections stay open, nothing answers. */
  freeze(): void {
    this.signal('SIGSTOP');
  }

  thaw(): void {
    this.signal('SIGCONT');
  }

  /** Stops the process and waits for it; escalates to SIGKILL after the grace period. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.thaw();
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Last resort from an exit handler, where nothing can be awaited. */
  killNow(): void {
    this.thaw();
    this.signal('SIGKILL');
  }
}
