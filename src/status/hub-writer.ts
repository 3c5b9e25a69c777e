import { randomBytes } from 'node:crypto';
import type { MemberApi } from '../clusters/index.ts';
import type { SecretScrubber } from '../telemetry/index.ts';

export interface ObjectReference {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string | undefined;
}

export type EventType = 'Normal' | 'Warning';

/**
 * Writes what the controller observed back to the hub: /status merge
 * patches and Events. Every string passes the scrubber first, so a secret
 * cannot reach status or an Event even if an error message carried one.
 * Repeats of the same Event within the window are dropped, as client-go's
 * correlator would aggregate them.
 */
export class HubWriter {
  private readonly hub: MemberApi;
  private readonly scrubber: SecretScrubber;
  private readonly component: string;
  private readonly recent = new Map<string, number>();
  private readonly windowMs: number;
  private readonly onEventError: ((error: unknown) => void) | undefined;

  constructor(hub: MemberApi, scrubber: SecretScrubber, options: { component?: string; eventWindowMs?: number; onEventError?: (error: unknown) => void } = {}) {
    this.hub = hub;
    this.scrubber = scrubber;
    this.onEventError = options.onEventError;
    this.component = options.component ?? 'rowcast';
    this.windowMs = options.eventWindowMs ?? 10 * 60_000;
  }

  /** A merge patch of /status; resourcePath is the object's path without /status. */
  async patchStatus(resourcePath: string, status: Record<string, unknown>): Promise<void> {
    const body = this.scrubber.scrubValue({ status }) as Record<string, unknown>;
    await this.hub.request('PATCH', `${resourcePath}/status`, { body, contentType: 'application/merge-patch+json' });
  }

  /** A merge patch of metadata (finalizers, annotations). */
  async patchMetadata(resourcePath: string, metadata: Record<string, unknown>): Promise<void> {
    await this.hub.request('PATCH', resourcePath, { body: { metadata }, contentType: 'application/merge-patch+json' });
  }

  async event(object: ObjectReference, type: EventType, reason: string, message: string): Promise<void> {
    const text = this.scrubber.scrub(message).slice(0, 1024);
    const dedupeKey = `${object.namespace}/${object.kind}/${object.name}/${reason}/${text}`;
    const now = Date.now();
    const last = this.recent.get(dedupeKey);
    if (last !== undefined && now - last < this.windowMs) return;
    this.recent.set(dedupeKey, now);
    if (this.recent.size > 10_000) for (const [key, at] of this.recent) if (now - at >= this.windowMs) this.recent.delete(key);
    const timestamp = new Date(now).toISOString();
    // Events are best effort, as client-go's recorder makes them: a refused or
    // failed Event must not fail the sync it describes.
    await this.hub
      .request('POST', `/api/v1/namespaces/${object.namespace}/events`, {
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${object.name}.${randomBytes(8).toString('hex')}`, namespace: object.namespace },
        involvedObject: object,
        type,
        reason,
        message: text,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.component,
        firstTimestamp: timestamp,
        lastTimestamp: timestamp,
        count: 1,
      },
      })
      .catch((error: unknown) => this.onEventError?.(error));
  }
}
