import { describeApiError } from '../runtime/index.ts';
import type { Member } from './member-registry.ts';

export interface ProbeResult {
  reachable: boolean;
  ready: boolean;
  serverVersion?: string;
  /** Safe words for a condition message. */
  message: string;
  probedAt: Date;
}

/**
 * /version says the member answers; /readyz says it can serve. Both bounded by
 * a timeout, and ended by `signal` (a stopping controller): the caller then
 * reports nothing, since an aborted probe says nothing about the member.
 */
export async function probeMember(member: Member, timeoutMs: number, signal?: AbortSignal): Promise<ProbeResult> {
  const probedAt = new Date();
  const bounded = (): AbortSignal => (signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]));
  try {
    const serverVersion = await member.api.version(bounded());
    try {
      await member.api.request('GET', '/readyz', { signal: bounded() });
      return { reachable: true, ready: true, serverVersion, message: `reachable, Kubernetes ${serverVersion}`, probedAt };
    } catch (error) {
      return { reachable: true, ready: false, serverVersion, message: `reachable but not ready: ${describeApiError(error).message}`, probedAt };
    }
  } catch (error) {
    return { reachable: false, ready: false, message: `unreachable: ${describeApiError(error).message}`, probedAt };
  }
}
