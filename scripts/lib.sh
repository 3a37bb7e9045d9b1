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

# ---------------------------------------------------------------- packages

# PKG...: installs Debian packages (with sudo when not root) without starting
# their services. No systemd runs here, so a package's postinst would start
# its daemon through invoke-rc.d (prometheus, rsyslog); a temporary
# policy-rc.d answering 101 forbids that, unless the machine has its own (as
# docker images do). Retries once after `apt-get update`.
APT_POLICY_RC=/usr/sbin/policy-rc.d
APT_POLICY_MARK="# temporary, from herald's scripts/lib.sh apt_install"
apt_sudo() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
drop_policy_rc() {
  [[ -f $APT_POLICY_RC ]] && grep -qF "$APT_POLICY_MARK" "$APT_POLICY_RC" && apt_sudo rm -f "$APT_POLICY_RC"
  return 0
}
apt_install() {
  (($#)) || return 0
  drop_policy_rc # leftover of an interrupted run
  if [[ ! -e $APT_POLICY_RC ]]; then
    printf '#!/bin/sh\n%s: no service starts during the install\nexit 101\n' "$APT_POLICY_MARK" |
      apt_sudo tee "$APT_POLICY_RC" >/dev/null
    apt_sudo chmod 755 "$APT_POLICY_RC"
    trap drop_policy_rc EXIT
  fi
  log "installing $*"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@")
  local out
  if ! out=$(apt_sudo "${apt[@]}" 2>&1); then
    log "apt-get install failed, running apt-get update once and retrying"
    apt_sudo apt-get update -q >/dev/null 2>&1 || log "warning: apt-get update failed"
    out=$(apt_sudo "${apt[@]}" 2>&1) || {
      echo "$out" >&2
      drop_policy_rc
      die "apt-get install $* failed"
    }
  fi
  drop_policy_rc
  trap - EXIT
}

# ---------------------------------------------------------------- python

# CANDIDATE...: prints the real path of the first Python 3.11+ among the
# commands (not a pyenv shim, so a venv does not depend on which pyenv
# version is selected later).
find_python() {
  local c exe
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || continue
    exe=$("$c" -c 'import sys; assert sys.version_info >= (3, 11); print(sys.executable)' 2>/dev/null) || continue
    [[ -x $exe ]] && { echo "$exe"; return 0; }
  done
  return 1
}

# The marker a finished venv carries: the hash of REQUIREMENTS and the base
# interpreter. VENV_MARK and REQUIREMENTS are the caller's.
venv_want() { echo "$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $1"; }

# True iff the venv at VENV_MARK's directory was built from the current
# REQUIREMENTS with an interpreter that still exists.
venv_current() {
  [[ -f $VENV_MARK ]] || return 1
  local base
  base=$(cut -d' ' -f2- "$VENV_MARK")
  [[ -x $base && $(<"$VENV_MARK") == "$(venv_want "$base")" ]]
}

# VENV PYTHON: (re)creates VENV with PYTHON and installs REQUIREMENTS; the
# caller checks the result and writes the marker last (`venv_want PYTHON >
# $VENV_MARK`), so an interrupted build is rebuilt.
venv_build() {
  local venv=$1 py=$2 out
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  out=$("$py" -m venv "$venv" 2>&1) || {
    echo "$out" >&2
    die "python -m venv failed (Debian's system python needs: apt-get install python3-venv)"
  }
  out=$("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$REQUIREMENTS" 2>&1) || {
    echo "$out" >&2
    die "pip install -r $REQUIREMENTS failed"
  }
}

# ---------------------------------------------------------------- test PKI

# DIR HOST DAYS CA_CN SERVER [CLIENT_CN]: a throwaway CA (ca.key, ca.pem), a
# server certificate SERVER.pem for localhost and HOST and, with CLIENT_CN, a
# client certificate client.pem. EC P-256 keys (instant, unlike RSA) as
# unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), mode 0600. Built in a temp dir and
# swapped in, so a failed run never leaves a half-written set behind.
make_test_pki() {
  local dir=$1 host=$2 days=$3 ca_cn=$4 server=$5 client_cn=${6:-} tmp="$1.tmp.$$" out
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Explicit config: independent of the distro's openssl.cnf defaults.
  cat >"$tmp/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:$host
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
  # (errexit is off inside `if ! ...`, hence the explicit error checks.)
  if ! out=$(cd "$tmp" && pki_files "$days" "$ca_cn" "$server" "$client_cn" 2>&1); then
    echo "$out" >&2
    rm -rf "$tmp"
    die "TLS certificate generation failed"
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# Runs in a subshell inside the temp dir holding openssl.cnf.
pki_files() {
  local days=$1 ca_cn=$2 server=$3 client_cn=$4 k
  local names=(ca "$server")
  [[ -n $client_cn ]] && names+=(client)
  umask 077
  for k in "${names[@]}"; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$k.key" || return 1
  done
  openssl req -new -x509 -config openssl.cnf -key ca.key -subj "/CN=$ca_cn" \
    -days "$days" -extensions ca_ext -out ca.pem || return 1
  pki_sign "$server" server_ext "/CN=localhost" "$days" || return 1
  if [[ -n $client_cn ]]; then
    pki_sign client client_ext "/CN=$client_cn" "$days" || return 1
  fi
  local certs=("${names[@]/%/.pem}")
  chmod 644 "${certs[@]}" && rm -f openssl.cnf &&
    openssl verify -CAfile ca.pem "${certs[@]:1}"
}

# NAME EXTENSIONS SUBJECT DAYS: NAME.key -> NAME.pem signed by the test CA.
pki_sign() {
  openssl req -new -config openssl.cnf -key "$1.key" -subj "$3" |
    openssl x509 -req -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days "$4" -extfile openssl.cnf -extensions "$2" -out "$1.pem"
}

# CA CERT...: true iff the certificates chain to CA and none of them expires
# within a day (a kept stack may outlive the 30-day validity).
test_pki_ok() {
  local ca=$1 f
  shift
  for f in "$ca" "$@"; do
    openssl x509 -noout -checkend 86400 -in "$f" >/dev/null 2>&1 || return 1
  done
  openssl verify -CAfile "$ca" "$@" >/dev/null 2>&1
}
