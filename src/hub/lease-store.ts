import type { MemberApi } from '../clusters/index.ts';
import type { Lease, LeaseStore } from '../runtime/index.ts';

/** The leader Lease on the hub, read and written as raw JSON; updates carry resourceVersion; each call ends by its signal (the renew deadline). */
export function hubLeaseStore(hub: MemberApi, namespace: string, name: string): LeaseStore {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
  return {
    get: async (signal) => {
      try {
        return await hub.request<Lease>('GET', `${collection}/${name}`, { signal });
      } catch (error) {
        if ((error as { code?: number }).code === 404) return undefined;
        throw error;
      }
    },
    create: (lease, signal) => hub.request<Lease>('POST', collection, { body: lease, signal }),
    update: (lease, signal) => hub.request<Lease>('PUT', `${collection}/${name}`, { body: lease, signal }),
  };
}
