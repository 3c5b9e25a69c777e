export { clusterAddCommand, clusterAddHelp, standaloneKubeconfig } from './cluster-add-command.ts';
export { CliError, EXIT } from './common.ts';
export { planCommand, planHelp } from './plan-command.ts';
export { renderCommand, renderHelp } from './render-command.ts';
