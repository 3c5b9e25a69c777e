export { HubController, type HubControllerDeps } from './controller.ts';
export { hubLeaseStore } from './lease-store.ts';
