// `rewind completion bash|zsh` and `rewind man`: both written from the commands as registered,
// so they never disagree with `rewind --help`.
import type { Command, Option } from 'commander';
import { print } from '../output.js';
import { REWIND_VERSION } from '../../trace/version.js';
import { UserError } from '../../trace/user_error.js';

function root(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

function visible(cmd: Command): Command[] {
  return cmd.commands.filter((c) => c.name() !== 'help');
}

function optionWords(cmd: Command): string {
  return [...cmd.options.flatMap((o: Option) => [o.long, o.short].filter((f): f is string => Boolean(f))), '--help'].join(' ');
}

/**
 * A bash completion function: the command words seen so far pick the list, options when the
 * word starts with '-', file names (bash's default) where an operand goes.
 */
function bashScript(program: Command): string {
  const cases: string[] = [];
  for (const c of visible(program)) {
    const subs = visible(c);
    for (const s of subs) cases.push(`    ${c.name()}/${s.name()}) opts="${optionWords(s)}" ;;`);
    if (subs.length > 0) cases.push(`    ${c.name()}/) opts="${optionWords(c)}"; words="${subs.map((s) => s.name()).join(' ')}" ;;`);
    else cases.push(`    ${c.name()}/*) opts="${optionWords(c)}" ;;`);
  }
  return `# bash completion for rewind ${REWIND_VERSION}: source <(rewind completion bash)
_rewind() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmd="" sub="" w opts="" words=""
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    [[ $w == -* ]] && continue
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done
  case "$cmd/$sub" in
    /) opts="--version --help"; words="${visible(program).map((c) => c.name()).join(' ')} help" ;;
${cases.join('\n')}
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [[ -n $words ]]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  fi
}
complete -o default -F _rewind rewind
`;
}

/** zsh runs the bash function through its bash completion layer. */
function zshScript(program: Command): string {
  return `#compdef rewind\n# zsh completion for rewind: source <(rewind completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n${bashScript(program)}`;
}

/** Text for roff: no leading dot or quote, backslashes and dashes escaped, other than ASCII as \[uXXXX]. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1')
    .replace(/[^\p{ASCII}]/gu, (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`);
}

/** The man page: every command with its usage, description and options. */
function manPage(program: Command): string {
  const out = [
    `.TH REWIND 1 "" "rewind ${REWIND_VERSION}" "User Commands"`,
    '.SH NAME',
    `rewind \\- ${roff(program.description())}`,
    '.SH SYNOPSIS',
    '.B rewind',
    '.I command',
    '[options] [arguments]',
    '.SH COMMANDS',
  ];
  const section = (cmd: Command, name: string): void => {
    out.push(`.SS "${roff(name)} ${roff(cmd.usage())}"`, roff(cmd.description()));
    for (const o of cmd.options) out.push('.TP', `.B ${roff(o.flags)}`, roff(o.description));
  };
  for (const c of visible(program)) {
    const subs = visible(c);
    // A command that runs itself and has subcommands too (server, server migrate) gets both.
    if (subs.length === 0 || c.options.length > 0) section(c, c.name());
    for (const s of subs) section(s, `${c.name()} ${s.name()}`);
  }
  out.push(
    '.SH "EXIT STATUS"',
    'record and replay exit with the recorded program\'s status; 125 when replay itself fails;',
    '65, 66, 69, 75 and 77 when the server refuses, lacks, cannot be reached, is busy, or denies;',
    '70 on an internal error. Every status and environment variable: docs/cli.md.',
    '.SH "SEE ALSO"',
    '.BR gdb (1)',
  );
  return `${out.join('\n')}\n`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script: source <(rewind completion bash)')
    .argument('<shell>', 'bash or zsh')
    .action((shell: string, _flags: unknown, cmd: Command) => {
      if (shell === 'bash') print(bashScript(root(cmd)));
      else if (shell === 'zsh') print(zshScript(root(cmd)));
      else throw new UserError(`no completion for ${JSON.stringify(shell)}: bash or zsh`);
    });
  program
    .command('man')
    .description('print the manual page of these commands: rewind man | man -l -')
    .action((_flags: unknown, cmd: Command) => print(manPage(root(cmd))));
}
