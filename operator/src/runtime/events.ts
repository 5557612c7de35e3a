// Kubernetes Events (events.k8s.io/v1) about the objects the operator manages. Callers record an
// Event on an action or a transition, never once per reconcile; recording never fails a reconcile.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { KubeObject } from './informer.js';
import type { KubeClient } from './kube-client.js';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorder {
  /** `reason` and `action` are CamelCase constants; `note` is for people. */
  record(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): Promise<void>;
}

/** The API server's limits on event fields. */
const MAX_NOTE_BYTES = 1024;
const MAX_REASON_LENGTH = 128;

function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function truncateBytes(text: string, max: number): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= max) return text;
  return `${buf.subarray(0, max - 3).toString('utf8').replace(/\uFFFD$/, '')}…`;
}

/**
 * The API server accepts Events about cluster-scoped objects only in `default` (an Event's namespace
 * must match the namespace of what it regards).
 */
const CLUSTER_SCOPED_EVENT_NAMESPACE = 'default';

export interface KubeEventRecorderOptions {
  client: KubeClient;
  /** For example `secai.io/fleet-operator`. */
  reportingController: string;
  /** This replica (pod name or identity). */
  reportingInstance: string;
  logger: Logger;
  clock?: Clock;
}

export class KubeEventRecorder implements EventRecorder {
  private readonly clock: Clock;

  constructor(private readonly opts: KubeEventRecorderOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  async record(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): Promise<void> {
    const objectName = regarding.metadata.name ?? 'unknown';
    // Event names are DNS subdomains (at most 253 characters) and unique per event.
    const name = `${objectName.slice(0, 200)}.${randomBytes(8).toString('hex')}`;
    const namespace = regarding.metadata.namespace || CLUSTER_SCOPED_EVENT_NAMESPACE;
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace },
      eventTime: microTime(this.clock.now()),
      reportingController: this.opts.reportingController,
      reportingInstance: this.opts.reportingInstance.slice(0, 128),
      action: action.slice(0, MAX_REASON_LENGTH),
      reason: reason.slice(0, MAX_REASON_LENGTH),
      type,
      note: truncateBytes(note, MAX_NOTE_BYTES),
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: objectName,
        ...(regarding.metadata.namespace ? { namespace: regarding.metadata.namespace } : {}),
        uid: regarding.metadata.uid,
        resourceVersion: regarding.metadata.resourceVersion,
      },
    };
    try {
      await this.opts.client.request({
        method: 'POST',
        path: `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/events`,
        body,
      });
    } catch (err) {
      this.opts.logger.warn({ err, reason, object: objectName }, 'could not record event');
    }
  }
}
