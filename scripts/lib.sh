# shellcheck shell=bash
# Helpers shared by the test-stack scripts (kafka.sh, rsyslog.sh, smtp.sh,
# prism.sh). Sourced, not run; the caller sets LOG_NAME (the prefix of its
# log lines) and `set -euo pipefail`.

log() { echo "$LOG_NAME: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Prints the header comment of the calling script (up to `set -euo`), exits 2.
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}

# Holds an exclusive flock on file $1 through fd 9 until exit (or `exec 9>&-`).
# Children that must not keep the lock get 9>&-.
take_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  flock 9
}

# ---------------------------------------------------------------- process

# True while any thread of process $1 runs. The main thread can exit first and
# show as a zombie (Z) while other threads still hold the listening socket, so
# /proc/PID/stat alone says "gone" too early.
pid_alive() {
  local t state
  for t in "/proc/$1/task/"*/stat; do
    state=$(sed 's/.*) //' "$t" 2>/dev/null | cut -d' ' -f1) || continue
    [[ -n $state && $state != Z && $state != X ]] && return 0
  done
  return 1
}

# FILE NEEDLE...: prints the pid in FILE iff that process lives and its command
# line (NULs as spaces) contains every NEEDLE; guards against a recycled pid
# and against an instance of another stack dir or port.
pid_from_file() {
  local f=$1 pid cmd n
  shift
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  for n in "$@"; do [[ $cmd == *"$n"* ]] || return 1; done
  echo "$pid"
}

# PID NAME TIMEOUT: SIGTERM, wait up to TIMEOUT s, then SIGKILL; returns once
# no thread of PID is left.
stop_pid() {
  local pid=$1 name=$2 timeout=$3
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
  if pid_alive "$pid"; then
    log "$name ignored SIGTERM for ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.05; done
  fi
}

# TIMEOUT INTERVAL CMD...: runs CMD every INTERVAL s until it succeeds (0) or
# TIMEOUT s have passed (1).
wait_for() {
  local deadline=$((SECONDS + $1)) interval=$2
  shift 2
  while ((SECONDS < deadline)); do
    "$@" && return 0
    sleep "$interval"
  done
  return 1
}

# PID_FILE LINES MESSAGE LOG...: for a process that died while starting: shows
# the last LINES of each LOG, drops the pid file, dies with MESSAGE.
startup_failed() {
  local pid_file=$1 lines=$2 msg=$3
  shift 3
  tail -n "$lines" "$@" >&2 2>/dev/null || true
  rm -f "$pid_file"
  die "$msg"
}

# ---------------------------------------------------------------- ports

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# HOST PORT...: dies if something (not ours: callers check their pid first)
# already listens on one of the ports.
ports_free() {
  local host=$1 p
  shift
  for p in "$@"; do
    port_open "$host" "$p" && die "port $p is already in use by another process (not started by this script)"
  done
  return 0
}

# 127.0.0.1 -> 0x0100007F, the byte order /proc/net/tcp shows.
ip_hex_le() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  echo $(((d << 24) | (c << 16) | (b << 8) | a))
}

# PID HOST PORT...: true iff process PID itself holds a listening socket on
# HOST:PORT for every PORT. Read from /proc instead of connecting: no
# connection, no handshake noise in the servers' logs.
pid_listens() {
  local pid=$1 host=$2 inodes p hex inode
  shift 2
  inodes=" $(find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' | tr '\n' ' ') "
  for p in "$@"; do
    printf -v hex '%08X:%04X' "$(ip_hex_le "$host")" "$p"
    inode=$(awk -v a="$hex" '$2 == a && $4 == "0A" { print $10 }' /proc/net/tcp)
    [[ -n $inode && $inodes == *" $inode "* ]] || return 1
  done
}
