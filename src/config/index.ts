export { controllerHelp, parseControllerOptions, type ControllerOptions, type OptionsResult } from './controller-options.ts';
