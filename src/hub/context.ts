import type { KubernetesObject } from '@kubernetes/client-node';
import type { ControllerOptions } from '../config/index.ts';
import type { MemberApi, MemberRegistry } from '../clusters/index.ts';
import type { PoolLease, PoolRegistry } from '../db/index.ts';
import type { TemplateCache } from '../render/index.ts';
import type { SupervisedInformer, WorkQueue } from '../runtime/index.ts';
import type { HubWriter } from '../status/index.ts';
import type { Logger, Metrics, SecretScrubber } from '../telemetry/index.ts';

/** A hub object as the informers hold it: what the parsers take plus what they leave out. */
export interface HubObject extends KubernetesObject {
  spec?: unknown;
  status?: Record<string, unknown>;
  data?: Record<string, string>;
}

/** Everything the reconcilers share; built once by the controller. */
export interface HubContext {
  options: ControllerOptions;
  logger: Logger;
  scrubber: SecretScrubber;
  metrics: Metrics;
  hub: MemberApi;
  /** The hub's kubeconfig as text, for ClusterTargets with inCluster: true. */
  hubKubeconfig: string;
  hubId: string;
  writer: HubWriter;
  members: MemberRegistry;
  pools: PoolRegistry;
  templates: TemplateCache;
  /** The pool lease each DQR holds, by DQR key. */
  leases: Map<string, PoolLease>;
  informers: {
    dqrs: SupervisedInformer<HubObject>;
    clusterTargets: SupervisedInformer<HubObject>;
    secrets: SupervisedInformer<HubObject>;
  };
  queues: { dqrs: WorkQueue; clusterTargets: WorkQueue };
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}
