#!/usr/bin/env bash
# A real SMTP server (aiosmtpd, from PyPI, in its own venv) as the mail relay
# for herald's alert-email tests. ONE Python process of our own
# (scripts/smtp/server.py), backgrounded by this script, with three
# listeners on 127.0.0.1:
#   STARTTLS + AUTH    SMTP_STARTTLS_PORT (10587): STARTTLS required first
#                      (530 otherwise), then AUTH PLAIN/LOGIN, then mail
#   SMTPS + AUTH       SMTP_SMTPS_PORT    (10465): implicit TLS, AUTH
#                      PLAIN/LOGIN, then mail
#   plain relay        SMTP_PLAIN_PORT    (10025): cleartext, no AUTH offered,
#                      mail accepted from anyone
# On the two AUTH servers MAIL/RCPT/DATA before AUTH get `530 5.7.0
# Authentication required`, a wrong password `535 5.7.8 Authentication
# credentials invalid`. Credentials: herald / smtp-secret.
#
# Every accepted message is stored byte-exact (the DATA bytes after
# dot-unstuffing, CRLF kept, no header added) as
#   $HERALD_STACK_DIR/run/smtp/out/<server>/<id>.eml    server: starttls,
#   $HERALD_STACK_DIR/run/smtp/out/<server>/<id>.json           smtps, plain
# <id> = <UTC yyyymmddTHHMMSS.ffffff>Z-<6-digit sequence>: names sort in
# delivery order. The .json (envelope: mail_from, rcpt_tos, server,
# auth_mechanism "PLAIN"/"LOGIN"/null, auth_login, tls, ...; see
# scripts/smtp/server.py) appears only after the .eml is complete.
#
# Test PKI (openssl CLI, EC P-256, unencrypted PKCS#8 keys, 30 days) in
# $HERALD_STACK_DIR/run/smtp-tls/: ca.pem (trust this), server.pem/.key (SAN
# DNS:localhost, IP:127.0.0.1). Generated when missing, invalid or expiring
# within a day; kept otherwise.
#
# Usage: scripts/smtp.sh COMMAND
#   install   create the venv $HERALD_STACK_DIR/smtp-venv with the pinned
#             scripts/smtp/requirements.txt (once; again when that file or
#             the Python changes)
#   start     install if needed, make the certs, start our server, wait until
#             the three ports accept. A fresh start empties the output dirs
#             (SMTP_KEEP_OUTPUT=1 keeps them); on an already running instance
#             it does nothing
#   stop      stop the server started by this script, wait for its exit
#   restart   stop + start keeping the output dirs and certs
#   status    exit 0 iff our server runs, the three ports accept and the
#             plain port answers 220
#   info      print ports, CA, output dirs, credentials, pid (key=value lines)
#   clear     empty the output dirs (safe while running)
#
# Environment:
#   HERALD_STACK_DIR       state root (default ~/.cache/herald-stack)
#   SMTP_STARTTLS_PORT     STARTTLS + AUTH listener (default 10587)
#   SMTP_SMTPS_PORT        implicit TLS + AUTH      (default 10465)
#   SMTP_PLAIN_PORT        cleartext, no AUTH       (default 10025)
#   SMTP_KEEP_OUTPUT=1     make `start` keep the stored messages
#   SMTP_START_TIMEOUT     seconds to wait for the ports (default 20)
#   SMTP_SMTPUTF8          1 (default) advertise SMTPUTF8, 0 don't (MAIL
#                          FROM ... SMTPUTF8 then gets 501)
#   SMTP_MAX_MESSAGE_SIZE  SIZE limit in bytes (default 33554432; 0 = none)
#   SMTP_PYTHON            interpreter for the venv (default: python3.11 or
#                          python3, must be 3.11+)
# SMTP_SMTPUTF8 and SMTP_MAX_MESSAGE_SIZE apply at a fresh start (restart).
set -euo pipefail
LOG_NAME=smtp.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR="$SCRIPT_DIR/smtp"
SERVER_PY="$SRC_DIR/server.py"
REQUIREMENTS="$SRC_DIR/requirements.txt"
# requirements.txt is the single place where the version is pinned.
AIOSMTPD_VERSION=$(sed -n 's/^aiosmtpd==\([^ ]*\).*/\1/p' "$REQUIREMENTS")

STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
VENV="$STACK_DIR/smtp-venv"
VENV_PY="$VENV/bin/python"
VENV_MARK="$VENV/.herald-complete"
RUN_DIR="$STACK_DIR/run"
SMTP_DIR="$RUN_DIR/smtp"
OUT_DIR="$SMTP_DIR/out"
SERVER_NAMES=(starttls smtps plain)
# Temp files of deliveries in progress (renamed into out/<server>/).
TMP_DIR="$SMTP_DIR/tmp"
LOG_FILE="$SMTP_DIR/server.log"
STDOUT_LOG="$SMTP_DIR/server.out"
PID_FILE="$RUN_DIR/smtp.pid"
# Serialises start/stop/restart/install/clear across parallel callers (test
# binaries may all call `start`). Closed in the server child (9>&-).
LOCK_FILE="$RUN_DIR/.smtp.lock"

TLS_DIR="$RUN_DIR/smtp-tls"
TLS_CA="$TLS_DIR/ca.pem"
TLS_CA_KEY="$TLS_DIR/ca.key"
TLS_SERVER_CERT="$TLS_DIR/server.pem"
TLS_SERVER_KEY="$TLS_DIR/server.key"
TLS_FILES=("$TLS_CA" "$TLS_CA_KEY" "$TLS_SERVER_CERT" "$TLS_SERVER_KEY")
TLS_DAYS=30

HOST=127.0.0.1
STARTTLS_PORT=${SMTP_STARTTLS_PORT:-10587}
SMTPS_PORT=${SMTP_SMTPS_PORT:-10465}
PLAIN_PORT=${SMTP_PLAIN_PORT:-10025}
PORTS=("$STARTTLS_PORT" "$SMTPS_PORT" "$PLAIN_PORT")
USERNAME=herald
PASSWORD=smtp-secret
SMTPUTF8=${SMTP_SMTPUTF8:-1}
MAX_MESSAGE_SIZE=${SMTP_MAX_MESSAGE_SIZE:-33554432}
START_TIMEOUT=${SMTP_START_TIMEOUT:-20}
STOP_TIMEOUT=20

# ---------------------------------------------------------------- install

installed() {
  venv_current && [[ -x $VENV_PY ]] || return 1
  "$VENV_PY" -c 'import aiosmtpd' >/dev/null 2>&1
}

install_venv() {
  installed && return 0
  local py t0=$SECONDS
  # shellcheck disable=SC2086 # the candidates are a word list
  py=$(find_python ${SMTP_PYTHON:-python3.11 python3}) ||
    die "no Python 3.11+ found (tried: ${SMTP_PYTHON:-python3.11 python3}); set SMTP_PYTHON"
  log "creating $VENV with aiosmtpd $AIOSMTPD_VERSION (Python $py)"
  venv_build "$VENV" "$py"
  "$VENV_PY" -c "import aiosmtpd; assert aiosmtpd.__version__ == '$AIOSMTPD_VERSION', aiosmtpd.__version__" ||
    die "aiosmtpd $AIOSMTPD_VERSION not importable from $VENV"
  # Written last: a venv without the marker is rebuilt.
  venv_want "$py" >"$VENV_MARK"
  log "installed aiosmtpd $AIOSMTPD_VERSION in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- TLS

tls_ok() {
  local f
  for f in "${TLS_FILES[@]}"; do [[ -s $f ]] || return 1; done
  test_pki_ok "$TLS_CA" "$TLS_SERVER_CERT"
}

gen_tls() {
  make_test_pki "$TLS_DIR" "$HOST" "$TLS_DAYS" "herald smtp test CA" server
  log "generated test CA + server cert (valid ${TLS_DAYS} days) in $TLS_DIR"
}

# ---------------------------------------------------------------- process

# Our server's pid (the Python of this stack dir's server.py).
our_pid() { pid_from_file "$PID_FILE" "/server.py " " --out-dir $OUT_DIR "; }

ports_open() { pid_listens "$1" "$HOST" "${PORTS[@]}"; }

# The event loop serves: the plain port answers "220 ..." (then QUIT).
greets() {
  (
    exec 3<>"/dev/tcp/$HOST/$PLAIN_PORT" || exit 1
    IFS= read -r -t 3 line <&3 || exit 1
    printf 'QUIT\r\n' >&3
    [[ $line == "220 "* ]]
  ) 2>/dev/null
}

ready() {
  pid_alive "$1" || startup_failed "$PID_FILE" 30 "server exited during startup (logs: $STDOUT_LOG, $LOG_FILE)" \
    "$STDOUT_LOG" "$LOG_FILE"
  ports_open "$1" && greets
}

wait_ready() {
  wait_for "$START_TIMEOUT" 0.1 ready "$1" ||
    die "server (pid $1) did not open ports ${PORTS[*]} within ${START_TIMEOUT}s (logs: $STDOUT_LOG, $LOG_FILE)"
}

# Empties out/<server>/ (the dirs themselves stay). Safe while running: a
# delivery in progress lives in TMP_DIR until its final rename.
clear_outputs() {
  local n
  for n in "${SERVER_NAMES[@]}"; do
    mkdir -p "$OUT_DIR/$n"
    find "$OUT_DIR/$n" -mindepth 1 -delete
  done
}

start_smtp() {
  install_venv
  local pid
  if pid=$(our_pid); then
    log "server already running (pid $pid)"
    tls_ok || log "warning: TLS files in $TLS_DIR missing/invalid/expiring; run: $0 restart"
    wait_ready "$pid"
  else
    rm -f "$PID_FILE"
    ports_free "$HOST" "${PORTS[@]}"
    tls_ok || gen_tls
    if [[ ${SMTP_KEEP_OUTPUT:-0} == 1 ]]; then
      local n
      for n in "${SERVER_NAMES[@]}"; do mkdir -p "$OUT_DIR/$n"; done
    else
      clear_outputs
    fi
    rm -rf "$TMP_DIR"
    mkdir -p "$TMP_DIR"
    local t0=$SECONDS
    # setsid: survive the calling shell and not get its Ctrl-C; without job
    # control it execs in place, so $! is the Python process.
    setsid "$VENV_PY" "$SERVER_PY" --host "$HOST" \
      --starttls-port "$STARTTLS_PORT" --smtps-port "$SMTPS_PORT" --plain-port "$PLAIN_PORT" \
      --cert "$TLS_SERVER_CERT" --key "$TLS_SERVER_KEY" \
      --out-dir "$OUT_DIR" --tmp-dir "$TMP_DIR" --log-file "$LOG_FILE" \
      --username "$USERNAME" --password "$PASSWORD" \
      --smtputf8 "$SMTPUTF8" --data-size-limit "$MAX_MESSAGE_SIZE" \
      >>"$STDOUT_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "starting aiosmtpd $AIOSMTPD_VERSION server (pid $pid), waiting up to ${START_TIMEOUT}s"
    wait_ready "$pid"
    log "server up after $((SECONDS - t0))s"
  fi
  log "STARTTLS+AUTH $HOST:$STARTTLS_PORT -> $OUT_DIR/starttls/"
  log "SMTPS+AUTH    $HOST:$SMTPS_PORT -> $OUT_DIR/smtps/"
  log "plain relay   $HOST:$PLAIN_PORT -> $OUT_DIR/plain/"
  log "user $USERNAME / $PASSWORD, CA $TLS_CA, log $LOG_FILE"
}

stop_smtp() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PID_FILE"
    log "server not running"
    return 0
  fi
  stop_pid "$pid" server "$STOP_TIMEOUT"
  rm -f "$PID_FILE"
  log "server stopped"
}

status_smtp() {
  local pid
  if ! pid=$(our_pid); then
    echo "smtp: not running"
    return 1
  fi
  if ports_open "$pid" && greets; then
    echo "smtp: running (pid $pid) on $HOST ports starttls=$STARTTLS_PORT smtps=$SMTPS_PORT plain=$PLAIN_PORT"
  else
    echo "smtp: process $pid alive but ports ${PORTS[*]} do not all accept"
    return 1
  fi
}

print_info() {
  local pid
  pid=$(our_pid) || pid=
  cat <<EOF
host=$HOST
starttls_port=$STARTTLS_PORT
smtps_port=$SMTPS_PORT
plain_port=$PLAIN_PORT
ca=$TLS_CA
tls_server_name=localhost
tls_dir=$TLS_DIR
out_dir=$OUT_DIR
out_starttls=$OUT_DIR/starttls
out_smtps=$OUT_DIR/smtps
out_plain=$OUT_DIR/plain
username=$USERNAME
password=$PASSWORD
aiosmtpd_version=$AIOSMTPD_VERSION
smtputf8=$SMTPUTF8
max_message_size=$MAX_MESSAGE_SIZE
log=$LOG_FILE
stdout_log=$STDOUT_LOG
venv=$VENV
pid_file=$PID_FILE
pid=$pid
EOF
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install)
    take_lock "$LOCK_FILE"
    install_venv
    ;;
  start)
    take_lock "$LOCK_FILE"
    start_smtp
    ;;
  stop)
    take_lock "$LOCK_FILE"
    stop_smtp
    ;;
  restart)
    take_lock "$LOCK_FILE"
    stop_smtp
    SMTP_KEEP_OUTPUT=1 start_smtp
    ;;
  status) status_smtp ;;
  info) print_info ;;
  clear)
    take_lock "$LOCK_FILE"
    clear_outputs
    ;;
  *) usage ;;
esac
