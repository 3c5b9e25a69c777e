export { clusterAddCommand, clusterAddHelp, standaloneKubeconfig } from './cluster-add-command.ts';
export { CliError, EXIT, rowcastVersion } from './common.ts';
export { completionCommand, completionHelp } from './completion-command.ts';
export { planCommand, planHelp } from './plan-command.ts';
export { renderCommand, renderHelp } from './render-command.ts';
export { statusCommand, statusHelp } from './status-command.ts';
