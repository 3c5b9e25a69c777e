export { HubController, type HubControllerDeps } from './controller.ts';
export { hubPolicyRules } from './rbac.ts';
export { hubLeaseStore } from './lease-store.ts';
export { Sharder, type SharderOptions } from './sharder.ts';
