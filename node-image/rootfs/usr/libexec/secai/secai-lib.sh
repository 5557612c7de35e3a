#!/usr/bin/env bash
# Shared by the SecAI node scripts: reading /etc/secai/node.env without executing it, the
# local-console guard and typed confirmations of the destructive vault and TPM steps, and the
# dry-run plan printer.

# Errors inside $(...) stop the script too, as they do outside it.
shopt -s inherit_errexit

SECAI_NODE_ENV=${SECAI_NODE_ENV:-/etc/secai/node.env}
SECAI_DRY_RUN=${SECAI_DRY_RUN:-false}

secai_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
secai_die() { secai_log "$*"; exit 1; }

# The value of KEY in an env file (last assignment wins; optional matching quotes), or empty.
# Parsed, not sourced: the file configures the node, it never runs code.
secai_env_value() {
  local file=$1 key=$2 line value=
  [ -r "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "$key="*)
        value=${line#"$key="}
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
        ;;
    esac
  done <"$file"
  printf '%s' "$value"
}

# Prints a command as a plan line in dry-run mode, runs it otherwise.
secai_run() {
  if [ "$SECAI_DRY_RUN" = true ]; then
    printf 'run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Writes stdin to FILE with MODE atomically; in dry-run prints the content instead.
secai_write_file() {
  local file=$1 mode=$2 content tmp
  content=$(cat)
  if [ "$SECAI_DRY_RUN" = true ]; then
    printf 'write: %s (mode %s)\n' "$file" "$mode"
    printf '%s\n' "$content" | sed 's/^/  | /'
    return 0
  fi
  tmp=$(mktemp "$file.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$file"
}

# Appends LINE to FILE and sets its MODE; in dry-run prints what it would append.
secai_append_line() {
  local file=$1 mode=$2 line=$3
  if [ "$SECAI_DRY_RUN" = true ]; then
    printf 'append: %s (mode %s)\n  | %s\n' "$file" "$mode" "$line"
    return 0
  fi
  printf '%s\n' "$line" >>"$file"
  chmod "$mode" "$file"
}

# Vault unlock, vault formatting and TPM enrollment happen only at the machine: stdin must be a
# virtual terminal, the system console or a serial/hypervisor console, never a pseudo-terminal
# (ssh, sudo over ssh, machinectl shell, a remote agent).
secai_require_local_console() {
  local tty
  [ -z "${SSH_CONNECTION:-}${SSH_TTY:-}" ] || secai_die "refused: this step is local-console only (SSH session detected)"
  tty=$(tty 2>/dev/null) || secai_die "refused: this step is local-console only (stdin is not a terminal)"
  [[ $tty =~ ^/dev/(tty[0-9]+|console|ttyS[0-9]+|hvc[0-9]+)$ ]] ||
    secai_die "refused: this step is local-console only ($tty is not a local console)"
}

# Asks the person at the console to type PHRASE exactly; anything else aborts.
secai_confirm() {
  local phrase=$1 answer
  printf 'Type "%s" to continue: ' "$phrase" >/dev/tty
  IFS= read -r -n 4096 answer </dev/tty || secai_die "aborted: no confirmation"
  [ "$answer" = "$phrase" ] || secai_die "aborted: confirmation did not match"
}
