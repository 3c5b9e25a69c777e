export { HubController, type HubControllerDeps } from './controller.ts';
