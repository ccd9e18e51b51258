# bash completion for expflow, and for make in a project it generated: targets,
# and experiment ids after EXP=, FROM= and compare's A= ... F=.
# Load it with:  eval "$(expflow completion bash)"   (in ~/.bashrc, say)
# `expflow completion bash` fills in the commands and options from its own argument parser.

_expflow_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD - 1]}"
  local words=""
  if ((COMP_CWORD == 1)); then
    words="@EXPFLOW_COMMANDS@"
  elif [[ "${prev}" == -o || "${prev}" == --output-dir || ("${COMP_WORDS[1]}" == update && "${cur}" != -*) ]]; then
    mapfile -t COMPREPLY < <(compgen -d -- "${cur}")
    return 0
  else
    case "${COMP_WORDS[1]}" in
@EXPFLOW_OPTIONS@
    esac
  fi
  mapfile -t COMPREPLY < <(compgen -W "${words}" -- "${cur}")
}
complete -F _expflow_complete expflow

# The experiment ids of the project in the current directory.
_expflow_ids() {
  local path
  for path in experiments/*/; do
    [[ -d "${path}" ]] && basename "${path}"
  done
}

_expflow_make() {
  local line="${COMP_LINE:0:COMP_POINT}" word prefix
  word="${line##*[[:space:]]}"
  if [[ ! -d expflow_runtime ]] && declare -F _make >/dev/null; then
    _make "$@"  # not an expflow project: bash-completion's own make completion
    return
  fi
  if [[ "${word}" =~ ^(EXP|FROM|[A-F])=(.*)$ ]]; then
    prefix="${BASH_REMATCH[1]}="
    if [[ "${COMP_WORDBREAKS}" == *=* ]]; then
      prefix=""  # bash completes only the part after "="
    fi
    mapfile -t COMPREPLY < <(compgen -P "${prefix}" -W "$(_expflow_ids)" -- "${BASH_REMATCH[2]}")
    return 0
  fi
  mapfile -t COMPREPLY < <(compgen -W "$(awk -F: '/^[a-z][a-z-]*:/ {print $1}' Makefile 2>/dev/null)" -- "${word}")
}
complete -F _expflow_make make
