#!/usr/bin/env bash
# A real rsyslogd (Debian's rsyslog + rsyslog-openssl) as the syslog receiver
# ("SIEM") for herald's tests. ONE rsyslogd of our own, in the foreground
# mode, backgrounded by this script, with its own config, pid file and work
# directory: no /dev/log, no kernel log, nothing written under /var/log.
#
# Three imtcp listeners on 127.0.0.1, each bound to its own ruleset that
# writes every received message as `%rawmsg%` + LF to its own file:
#   plain TCP                         RSYSLOG_TCP_PORT  (10514) -> out/tcp.log
#   TLS, server auth only ("anon")    RSYSLOG_TLS_PORT  (10515) -> out/tls.log
#   mutual TLS ("x509/certvalid":     RSYSLOG_MTLS_PORT (10516) -> out/mtls.log
#     client cert signed by the test CA required)
# Every listener takes RFC 6587 octet-counted frames ("LEN SP MSG") and
# LF-terminated frames on the same port. For an octet-counted frame the output
# line is exactly the LEN bytes after "LEN SP" (the whole "<PRI>1 ..." syslog
# message, unmodified), followed by one LF added by the template.
# Received bytes are not altered: control-character escaping is off, trailing
# LFs are kept, messages up to RSYSLOG_MAX_MSG (1m) bytes are not truncated,
# no rate limiting, and the main queue is Direct (a message is in the file
# before rsyslog reads on; files are flushed at the end of every batch).
#
# Test PKI (openssl CLI, EC P-256, unencrypted PKCS#8 keys, 30 days) in
# $HERALD_STACK_DIR/run/rsyslog-tls/: ca.pem, server.pem/.key (SAN
# DNS:localhost, IP:127.0.0.1), client.pem/.key (CN=herald). Generated when
# missing, invalid or expiring within a day; kept otherwise.
#
# Usage: scripts/rsyslog.sh COMMAND
#   install   apt-get install rsyslog rsyslog-openssl if missing (no service
#             is left running by the install)
#   start     install if needed, make the certs, write the config, start our
#             rsyslogd, wait until the three ports accept. A fresh start
#             empties the output files (RSYSLOG_KEEP_OUTPUT=1 keeps them); on
#             an already running instance it does nothing
#   stop      stop the rsyslogd started by this script, wait for its exit
#   restart   stop + start keeping output files (appended to) and certs
#   status    exit 0 iff our rsyslogd runs and the three ports accept
#   info      print ports, cert paths, output files, pid (key=value lines)
#   clear     empty the three output files (safe while running)
#
# Environment:
#   HERALD_STACK_DIR       state root (default ~/.cache/herald-stack)
#   RSYSLOG_TCP_PORT       plain TCP listener (default 10514)
#   RSYSLOG_TLS_PORT       TLS listener      (default 10515)
#   RSYSLOG_MTLS_PORT      mTLS listener     (default 10516)
#   RSYSLOG_MAX_MSG        max message size  (default 1m; larger messages are
#                          split by rsyslog)
#   RSYSLOG_KEEP_OUTPUT=1  make `start` keep the existing output files
#   RSYSLOG_START_TIMEOUT  seconds to wait for the ports (default 20)
set -euo pipefail
LOG_NAME=rsyslog.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
RUN_DIR="$STACK_DIR/run"
CONF_DIR="$RUN_DIR/rsyslog"
CONF="$CONF_DIR/rsyslog.conf"
WORK_DIR="$CONF_DIR/work"
OUT_DIR="$CONF_DIR/out"
OUT_TCP="$OUT_DIR/tcp.log"
OUT_TLS="$OUT_DIR/tls.log"
OUT_MTLS="$OUT_DIR/mtls.log"
OUT_FILES=("$OUT_TCP" "$OUT_TLS" "$OUT_MTLS")
# rsyslogd's own messages (startup, TLS handshake errors, connection
# open/close) and its stdout/stderr.
INTERNAL_LOG="$CONF_DIR/rsyslogd.log"
STDOUT_LOG="$CONF_DIR/rsyslogd.out"
PID_FILE="$RUN_DIR/rsyslog.pid"
# Serialises start/stop/restart/install/clear across parallel callers (test
# binaries may all call `start`). Closed in the rsyslogd child (9>&-).
LOCK_FILE="$RUN_DIR/.rsyslog.lock"

TLS_DIR="$RUN_DIR/rsyslog-tls"
TLS_CA="$TLS_DIR/ca.pem"
TLS_CA_KEY="$TLS_DIR/ca.key"
TLS_SERVER_CERT="$TLS_DIR/server.pem"
TLS_SERVER_KEY="$TLS_DIR/server.key"
TLS_CLIENT_CERT="$TLS_DIR/client.pem"
TLS_CLIENT_KEY="$TLS_DIR/client.key"
TLS_FILES=("$TLS_CA" "$TLS_CA_KEY" "$TLS_SERVER_CERT" "$TLS_SERVER_KEY" "$TLS_CLIENT_CERT" "$TLS_CLIENT_KEY")
TLS_DAYS=30
TLS_CLIENT_CN=herald

HOST=127.0.0.1
TCP_PORT=${RSYSLOG_TCP_PORT:-10514}
TLS_PORT=${RSYSLOG_TLS_PORT:-10515}
MTLS_PORT=${RSYSLOG_MTLS_PORT:-10516}
PORTS=("$TCP_PORT" "$TLS_PORT" "$MTLS_PORT")
MAX_MSG=${RSYSLOG_MAX_MSG:-1m}
START_TIMEOUT=${RSYSLOG_START_TIMEOUT:-20}
STOP_TIMEOUT=20

RSYSLOGD=/usr/sbin/rsyslogd
PACKAGES=(rsyslog rsyslog-openssl)

# ---------------------------------------------------------------- install

# The OpenSSL stream driver; its module dir is arch-specific.
ossl_driver() { compgen -G "/usr/lib/*/rsyslog/lmnsd_ossl.so" >/dev/null || [[ -f /usr/lib/rsyslog/lmnsd_ossl.so ]]; }

installed() {
  local p
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || return 1
  done
  [[ -x $RSYSLOGD ]] && ossl_driver
}

# rsyslogd pids other than ours, one a line.
foreign_rsyslogds() {
  local ours p
  ours=$(our_pid 2>/dev/null) || ours=
  for p in $(pgrep -x rsyslogd 2>/dev/null || true); do
    [[ $p != "$ours" ]] && echo "$p"
  done
  return 0
}

install_pkgs() {
  installed && return 0
  local before after p
  before=$(foreign_rsyslogds)
  # apt_install keeps the package's postinst from launching a system
  # rsyslogd (writing to /var/log, owning /dev/log).
  apt_install "${PACKAGES[@]}"
  installed || die "packages installed but $RSYSLOGD or the ossl stream driver is missing"
  log "installed $($RSYSLOGD -v 2>/dev/null | sed -n "1s/ *compiled with://p")"
  # Nothing to kill here (we started none of it): just say so.
  after=$(foreign_rsyslogds)
  for p in $after; do
    grep -qx "$p" <<<"$before" && continue
    log "WARNING: a system rsyslogd (pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)) appeared during" \
      "the install; not ours, left running"
  done
}

# ---------------------------------------------------------------- TLS

tls_ok() {
  local f
  for f in "${TLS_FILES[@]}"; do [[ -s $f ]] || return 1; done
  test_pki_ok "$TLS_CA" "$TLS_SERVER_CERT" "$TLS_CLIENT_CERT"
}

gen_tls() {
  make_test_pki "$TLS_DIR" "$HOST" "$TLS_DAYS" "herald rsyslog test CA" server "$TLS_CLIENT_CN"
  log "generated test CA + server/client certs (valid ${TLS_DAYS} days) in $TLS_DIR"
}

# ---------------------------------------------------------------- config

write_conf() {
  mkdir -p "$CONF_DIR" "$WORK_DIR" "$OUT_DIR"
  local tmp="$CONF.tmp.$$"
  cat >"$tmp" <<EOF
# Generated by scripts/rsyslog.sh; overwritten on every start.
# Only what is below: no imuxsock (/dev/log), no imklog, nothing in /var/log.
global(
  workDirectory="$WORK_DIR"
  # 100 KB+ frames must not be truncated (a longer message would be split).
  maxMessageSize="$MAX_MSG"
  # Byte-exact: no "#011"-style escaping of control characters (incl. TAB),
  # no dropping of a trailing LF inside a frame, no 8-bit escaping.
  parser.escapeControlCharactersOnReceive="off"
  parser.escape8BitCharactersOnReceive="off"
  parser.dropTrailingLFOnReception="off"
  net.enableDNS="off"
  # rsyslogd's own messages through the default ruleset (-> rsyslogd.log)
  # instead of only to stderr.
  processInternalMessages="on"
  defaultNetstreamDriverCAFile="$TLS_CA"
  defaultNetstreamDriverCertFile="$TLS_SERVER_CERT"
  defaultNetstreamDriverKeyFile="$TLS_SERVER_KEY"
)

# Direct: the receiving thread writes each batch to the file before reading
# on, so whatever rsyslog has read is on disk, also across a stop/restart.
main_queue(queue.type="Direct")

module(load="imtcp" maxSessions="1000" streamDriver.name="ptcp")

# Each listener: octet-counted (RFC 6587 3.4.1) and LF framing, no rate limit.
input(type="imtcp" name="tcp" address="$HOST" port="$TCP_PORT" ruleset="tcp"
      streamDriver.name="ptcp" supportOctetCountedFraming="on"
      maxFrameSize="200000000" rateLimit.interval="0" notifyOnConnectionClose="on")

input(type="imtcp" name="tls" address="$HOST" port="$TLS_PORT" ruleset="tls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      supportOctetCountedFraming="on"
      maxFrameSize="200000000" rateLimit.interval="0" notifyOnConnectionClose="on")

input(type="imtcp" name="mtls" address="$HOST" port="$MTLS_PORT" ruleset="mtls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/certvalid"
      streamDriver.CAFile="$TLS_CA"
      supportOctetCountedFraming="on"
      maxFrameSize="200000000" rateLimit.interval="0" notifyOnConnectionClose="on")

# The message exactly as received (for octet-counted frames: without the
# "LEN " prefix), plus one LF.
template(name="herald_raw" type="list") {
  property(name="rawmsg")
  constant(value="\n")
}

ruleset(name="tcp") {
  action(type="omfile" file="$OUT_TCP" template="herald_raw"
         flushOnTXEnd="on" asyncWriting="off" ioBufferSize="4m" fileCreateMode="0644")
}
ruleset(name="tls") {
  action(type="omfile" file="$OUT_TLS" template="herald_raw"
         flushOnTXEnd="on" asyncWriting="off" ioBufferSize="4m" fileCreateMode="0644")
}
ruleset(name="mtls") {
  action(type="omfile" file="$OUT_MTLS" template="herald_raw"
         flushOnTXEnd="on" asyncWriting="off" ioBufferSize="4m" fileCreateMode="0644")
}

# The default ruleset gets no input, only rsyslogd's own messages.
action(type="omfile" file="$INTERNAL_LOG" template="RSYSLOG_FileFormat" flushOnTXEnd="on")
EOF
  local out
  if ! out=$("$RSYSLOGD" -N1 -f "$tmp" 2>&1); then
    echo "$out" >&2
    rm -f "$tmp"
    die "rsyslogd rejected the generated config"
  fi
  mv "$tmp" "$CONF"
}

# ---------------------------------------------------------------- process

# Our rsyslogd (the one running our config), not any other.
our_pid() { pid_from_file "$PID_FILE" "-f $CONF "; }

# Listening sockets from /proc: a bare connect to a TLS port makes rsyslogd
# log a failed handshake every time.
ports_open() { pid_listens "$1" "$HOST" "${PORTS[@]}"; }

ready() {
  pid_alive "$1" || startup_failed "$PID_FILE" 30 "rsyslogd exited during startup (logs: $STDOUT_LOG, $INTERNAL_LOG)" \
    "$STDOUT_LOG" "$INTERNAL_LOG"
  ports_open "$1"
}

wait_ready() {
  wait_for "$START_TIMEOUT" 0.1 ready "$1" ||
    die "rsyslogd (pid $1) did not open ports ${PORTS[*]} within ${START_TIMEOUT}s (logs: $STDOUT_LOG, $INTERNAL_LOG)"
}

truncate_outputs() {
  mkdir -p "$OUT_DIR"
  local f
  # omfile opens with O_APPEND, so truncating under a running rsyslogd is safe.
  for f in "${OUT_FILES[@]}"; do : >"$f"; done
}

start_rsyslog() {
  install_pkgs
  local pid
  if pid=$(our_pid); then
    log "rsyslogd already running (pid $pid)"
    tls_ok || log "warning: TLS files in $TLS_DIR missing/invalid/expiring; run: $0 restart"
    wait_ready "$pid"
  else
    rm -f "$PID_FILE"
    ports_free "$HOST" "${PORTS[@]}"
    tls_ok || gen_tls
    write_conf
    if [[ ${RSYSLOG_KEEP_OUTPUT:-0} == 1 ]]; then
      mkdir -p "$OUT_DIR"
    else
      truncate_outputs
    fi
    local t0=$SECONDS
    # -n: stay in the foreground (no fork, so $! is rsyslogd); -i: its own pid
    # file, written by rsyslogd. setsid: survive the calling shell and not get
    # its Ctrl-C.
    setsid "$RSYSLOGD" -n -f "$CONF" -i "$PID_FILE" >>"$STDOUT_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    log "starting rsyslogd (pid $pid), waiting up to ${START_TIMEOUT}s"
    wait_ready "$pid"
    # rsyslogd writes the pid file itself during startup.
    local deadline=$((SECONDS + 5))
    while [[ $(cat "$PID_FILE" 2>/dev/null) != "$pid" ]] && ((SECONDS < deadline)); do sleep 0.05; done
    [[ $(cat "$PID_FILE" 2>/dev/null) == "$pid" ]] || echo "$pid" >"$PID_FILE"
    log "rsyslogd up after $((SECONDS - t0))s"
  fi
  log "plain TCP $HOST:$TCP_PORT -> $OUT_TCP"
  log "TLS       $HOST:$TLS_PORT -> $OUT_TLS (server auth; CA $TLS_CA)"
  log "mTLS      $HOST:$MTLS_PORT -> $OUT_MTLS (client cert $TLS_CLIENT_CERT, key $TLS_CLIENT_KEY)"
  log "config $CONF, rsyslogd's own log $INTERNAL_LOG"
}

stop_rsyslog() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PID_FILE"
    log "rsyslogd not running"
    return 0
  fi
  stop_pid "$pid" rsyslogd "$STOP_TIMEOUT"
  rm -f "$PID_FILE"
  log "rsyslogd stopped"
}

status_rsyslog() {
  local pid
  if ! pid=$(our_pid); then
    echo "rsyslog: not running"
    return 1
  fi
  if ports_open "$pid"; then
    echo "rsyslog: running (pid $pid) on $HOST ports tcp=$TCP_PORT tls=$TLS_PORT mtls=$MTLS_PORT"
  else
    echo "rsyslog: process $pid alive but ports ${PORTS[*]} do not all accept"
    return 1
  fi
}

print_info() {
  local pid
  pid=$(our_pid) || pid=
  cat <<EOF
host=$HOST
tcp_port=$TCP_PORT
tls_port=$TLS_PORT
mtls_port=$MTLS_PORT
tls_ca=$TLS_CA
tls_client_cert=$TLS_CLIENT_CERT
tls_client_key=$TLS_CLIENT_KEY
tls_client_cn=$TLS_CLIENT_CN
tls_server_name=localhost
tls_dir=$TLS_DIR
out_tcp=$OUT_TCP
out_tls=$OUT_TLS
out_mtls=$OUT_MTLS
config=$CONF
internal_log=$INTERNAL_LOG
stdout_log=$STDOUT_LOG
max_message_size=$MAX_MSG
pid_file=$PID_FILE
pid=$pid
EOF
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install)
    take_lock "$LOCK_FILE"
    install_pkgs
    ;;
  start)
    take_lock "$LOCK_FILE"
    start_rsyslog
    ;;
  stop)
    take_lock "$LOCK_FILE"
    stop_rsyslog
    ;;
  restart)
    take_lock "$LOCK_FILE"
    stop_rsyslog
    RSYSLOG_KEEP_OUTPUT=1 start_rsyslog
    ;;
  status) status_rsyslog ;;
  info) print_info ;;
  clear)
    take_lock "$LOCK_FILE"
    truncate_outputs
    ;;
  *) usage ;;
esac
