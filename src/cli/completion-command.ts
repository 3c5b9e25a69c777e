import { controllerHelp } from '../config/index.ts';
import { clusterAddHelp } from './cluster-add-command.ts';
import { CliError, EXIT } from './common.ts';
import { planHelp } from './plan-command.ts';
import { renderHelp } from './render-command.ts';
import { statusHelp } from './status-command.ts';

export const completionHelp = `usage: rowcast completion bash|zsh

Prints a shell completion script for rowcast:
  source <(rowcast completion bash)        # bash, this shell
  rowcast completion zsh > "\${fpath[1]}/_rowcast"   # zsh, every shell`;

/** The flags each command's help text lists: the help is the one place they are written down. */
function flagsOf(help: string): string[] {
  return [...new Set([...help.matchAll(/(?:^|[\s,])(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1] ?? ''))].sort();
}

function commandTable(): Record<string, string[]> {
  return {
    controller: flagsOf(controllerHelp()),
    render: flagsOf(renderHelp),
    plan: flagsOf(planHelp),
    status: flagsOf(statusHelp),
    'cluster add': flagsOf(clusterAddHelp),
    completion: ['bash', 'zsh'],
    version: [],
  };
}

function bash(table: Record<string, string[]>): string {
  const top = [...new Set(Object.keys(table).map((c) => c.split(' ')[0] ?? c))].join(' ');
  const cases = Object.entries(table)
    .map(([command, words]) => `    "${command}") words="${words.join(' ')}" ;;`)
    .join('\n');
  return `# bash completion for rowcast; source <(rowcast completion bash)
_rowcast() {
  local cur command words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  if [ "\${COMP_CWORD}" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${top} --version --help" -- "$cur") )
    return
  fi
  command="\${COMP_WORDS[1]}"
  if [ "$command" = "cluster" ]; then
    if [ "\${COMP_CWORD}" -eq 2 ]; then COMPREPLY=( $(compgen -W "add" -- "$cur") ); return; fi
    command="cluster \${COMP_WORDS[2]}"
  fi
  case "$command" in
${cases}
    *) words="" ;;
  esac
  case "$cur" in
    -*|'') COMPREPLY=( $(compgen -W "$words --help" -- "$cur") ) ;;
  esac
  [ \${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=( $(compgen -f -- "$cur") )
}
complete -F _rowcast rowcast
`;
}

function zsh(table: Record<string, string[]>): string {
  const top = [...new Set(Object.keys(table).map((c) => c.split(' ')[0] ?? c))].join(' ');
  const cases = Object.entries(table)
    .map(([command, words]) => `    "${command}") compadd -- ${[...words, '--help'].join(' ')} ;;`)
    .join('\n');
  return `#compdef rowcast
# zsh completion for rowcast; rowcast completion zsh > "\${fpath[1]}/_rowcast"
_rowcast() {
  local command
  if (( CURRENT == 2 )); then
    compadd -- ${top} --version --help
    return
  fi
  command="\${words[2]}"
  if [[ "$command" == cluster ]]; then
    if (( CURRENT == 3 )); then compadd -- add; return; fi
    command="cluster \${words[3]}"
  fi
  if [[ "\${words[CURRENT]}" != -* ]]; then _files; return; fi
  case "$command" in
${cases}
  esac
}
compdef _rowcast rowcast
`;
}

export function completionCommand(argv: string[]): Promise<number> {
  const [shell, ...extra] = argv;
  if (shell === '-h' || shell === '--help') {
    process.stdout.write(`${completionHelp}\n`);
    return Promise.resolve(EXIT.ok);
  }
  if (extra.length > 0 || (shell !== 'bash' && shell !== 'zsh')) throw new CliError(`completion: ${JSON.stringify(shell ?? '')} is not a shell it knows; use bash or zsh`, EXIT.usage);
  process.stdout.write(shell === 'bash' ? bash(commandTable()) : zsh(commandTable()));
  return Promise.resolve(EXIT.ok);
}
