#!/usr/bin/env bash
# moto's server (PyPI moto[server], in its own venv) as AWS for herald's
# Security Hub tests, with request authentication on: after the four setup
# calls (scripts/moto/setup.py: a user, its access key, an allow-all policy,
# attached) every request must carry a valid SigV4 signature of a known key,
# so a wrong signature or secret is refused with 403 as AWS would. The setup
# also creates a role (herald-role) for AssumeRole.
#
# Usage: scripts/moto.sh COMMAND
#   install   create the venv $HERALD_STACK_DIR/moto-venv with the pinned
#             scripts/moto/requirements.txt (once; again when it changes)
#   start     install if needed, start the server, run the setup; on an
#             already running instance it does nothing
#   stop      stop the server started by this script
#   status    exit 0 iff our server runs and answers
#   info      endpoint, region, python, log (one line per request),
#             access_key_id, secret_access_key, role_arn, account_id
#             (key=value lines)
#   findings ID...  the findings with these ids, as JSON (scripts/moto/findings.py)
#   validate FILE...  check BatchImportFindings bodies against botocore's
#             securityhub service model (scripts/moto/validate.py)
#
# Environment:
#   HERALD_STACK_DIR   state root (default ~/.cache/herald-stack)
#   MOTO_PORT          listener on 127.0.0.1 (default 15000)
#   MOTO_RUN_DIR       pid, log and credentials (default $HERALD_STACK_DIR/run):
#                      a private instance shares the installed venv
#   MOTO_AUTH=0        no authentication and no setup. moto 5.2.6 with
#                      authentication on fails (500) on an unsigned
#                      AssumeRoleWithWebIdentity, which AWS takes unsigned, so
#                      the web identity tests use such an instance
#   MOTO_PYTHON        interpreter for the venv (default: python3.11 or python3)
set -euo pipefail
LOG_NAME=moto.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR="$SCRIPT_DIR/moto"
REQUIREMENTS="$SRC_DIR/requirements.txt"
MOTO_VERSION=$(sed -n 's/^moto==\([^ ]*\).*/\1/p' "$REQUIREMENTS")

STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
VENV="$STACK_DIR/moto-venv"
VENV_PY="$VENV/bin/python"
VENV_MARK="$VENV/.herald-complete"
RUN_DIR=${MOTO_RUN_DIR:-$STACK_DIR/run}
AUTH=${MOTO_AUTH:-1}
MOTO_DIR="$RUN_DIR/moto"
LOG_FILE="$MOTO_DIR/server.log"
INFO_FILE="$MOTO_DIR/credentials"
PID_FILE="$RUN_DIR/moto.pid"
LOCK_FILE="$RUN_DIR/.moto.lock"
HOST=127.0.0.1
PORT=${MOTO_PORT:-15000}
REGION=us-east-1
ENDPOINT="http://$HOST:$PORT"
START_TIMEOUT=60

# Cheap (tests call start and validate often; importing moto takes seconds
# of CPU): the marker, the interpreter and the installed packages' files.
installed() {
  venv_current && [[ -x $VENV_PY ]] || return 1
  compgen -G "$VENV/lib/python3*/site-packages/moto/server.py" >/dev/null &&
    compgen -G "$VENV/lib/python3*/site-packages/boto3/__init__.py" >/dev/null
}

install_venv() {
  installed && return 0
  local py t0=$SECONDS
  # shellcheck disable=SC2086 # the candidates are a word list
  py=$(find_python ${MOTO_PYTHON:-python3.11 python3}) ||
    die "no Python 3.11+ found; set MOTO_PYTHON"
  log "creating $VENV with moto $MOTO_VERSION (Python $py)"
  venv_build "$VENV" "$py"
  "$VENV_PY" -c "import moto; assert moto.__version__ == '$MOTO_VERSION', moto.__version__" ||
    die "moto $MOTO_VERSION not importable from $VENV"
  venv_want "$py" >"$VENV_MARK"
  log "installed moto $MOTO_VERSION in $((SECONDS - t0))s"
}

our_pid() { pid_from_file "$PID_FILE" "moto_server" " -p $PORT"; }

answers() { curl -fsS -o /dev/null "$ENDPOINT/moto-api/" 2>/dev/null; }

ready() {
  pid_alive "$1" || startup_failed "$PID_FILE" 30 "moto exited during startup (log: $LOG_FILE)" "$LOG_FILE"
  answers
}

start_moto() {
  local pid
  if pid=$(our_pid) && [[ -f $INFO_FILE ]] && grep -qx "auth=$AUTH" "$INFO_FILE"; then
    log "server already running (pid $pid)"
    return 0
  fi
  install_venv
  [[ -n ${pid:-} ]] && stop_pid "$pid" moto 10
  rm -f "$PID_FILE" "$INFO_FILE"
  ports_free "$HOST" "$PORT"
  mkdir -p "$MOTO_DIR"
  local t0=$SECONDS
  local no_auth=4
  [[ $AUTH == 1 ]] || no_auth=inf
  INITIAL_NO_AUTH_ACTION_COUNT=$no_auth setsid "$VENV/bin/moto_server" -H "$HOST" -p "$PORT" \
    >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_for "$START_TIMEOUT" 0.2 ready "$pid" ||
    die "moto (pid $pid) did not answer on $ENDPOINT within ${START_TIMEOUT}s (log: $LOG_FILE)"
  # The file holds a secret key.
  (
    umask 077
    echo "auth=$AUTH" >"$INFO_FILE.tmp"
    if [[ $AUTH == 1 ]]; then
      "$VENV_PY" "$SRC_DIR/setup.py" "$ENDPOINT" "$REGION" >>"$INFO_FILE.tmp" ||
        die "moto setup failed (log: $LOG_FILE)"
    fi
  )
  mv "$INFO_FILE.tmp" "$INFO_FILE"
  log "moto $MOTO_VERSION up on $ENDPOINT after $((SECONDS - t0))s, authentication $([[ $AUTH == 1 ]] && echo on || echo off)"
}

stop_moto() {
  local pid
  if pid=$(our_pid); then
    stop_pid "$pid" moto 10
    log "server stopped"
  else
    log "server not running"
  fi
  rm -f "$PID_FILE" "$INFO_FILE"
}

print_info() {
  echo "endpoint=$ENDPOINT"
  echo "region=$REGION"
  echo "python=$VENV_PY"
  echo "log=$LOG_FILE"
  [[ -f $INFO_FILE ]] && cat "$INFO_FILE"
  return 0
}

cmd=${1:-}
shift || true
mkdir -p "$RUN_DIR"
case $cmd in
install)
  take_lock "$LOCK_FILE"
  install_venv
  ;;
start)
  take_lock "$LOCK_FILE"
  start_moto
  ;;
stop)
  take_lock "$LOCK_FILE"
  stop_moto
  ;;
status)
  if pid=$(our_pid) && answers && [[ -f $INFO_FILE ]]; then
    echo "moto: running (pid $pid) on $ENDPOINT"
  else
    echo "moto: not running"
    exit 1
  fi
  ;;
info) print_info ;;
findings)
  [[ -f $INFO_FILE ]] || die "moto is not running (no $INFO_FILE)"
  key_id=$(sed -n 's/^access_key_id=//p' "$INFO_FILE")
  secret=$(sed -n 's/^secret_access_key=//p' "$INFO_FILE")
  # Without authentication any key will do.
  "$VENV_PY" "$SRC_DIR/findings.py" "$ENDPOINT" "$REGION" "${key_id:-anonymous}" \
    "${secret:-anonymous}" "$@"
  ;;
validate)
  install_venv >&2
  "$VENV_PY" "$SRC_DIR/validate.py" "$@"
  ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
