#!/usr/bin/env bash
# Contract mocks for herald's HTTP notifiers: Stoplight Prism (npm
# @stoplight/prism-cli, pinned below; 5.15+ needs Node 24, this one runs on
# Node 18/20) in `mock` mode, offline, validating every request against an
# OpenAPI document. Three Prism processes of our own (four with the shared
# PagerDuty spec), backgrounded by this script, on 127.0.0.1:
#   Jira       PRISM_JIRA_PORT      (14010) serving tests/contracts/jira-v2.json
#              (Jira REST v2 + GET /rest/api/3/search/jql, see its info.x-herald)
#              Its searches find nothing ({"issues":[],"total":0,...}): the
#              "create an issue" path.
#   Jira, found PRISM_JIRA_FOUND_PORT (14012) the same contract, but its
#              searches find one issue, OPS-1 (labels herald, herald-x): the
#              "comment on / transition the existing issue" paths. A variant
#              made at start in the run dir (only the order of the examples
#              differs), because Prism picks an example per request only from
#              a `Prefer: example=NAME` header, which herald does not send.
#   PagerDuty  PRISM_PAGERDUTY_PORT (14011) serving
#              tests/contracts/pagerduty-events-v2.json, herald's own Events
#              API v2 contract (see its info.x-herald); always there, so a
#              fresh clone needs nothing beside the repo.
#   PagerDuty, shared PRISM_PAGERDUTY_SHARED_PORT (14013), only when
#              $PRISM_SHARED_SPECS/pagerduty-events-v2.json exists (default
#              <repo>/../shared/specs): that spec, read in place at run time
#              (it has no license: never copy it into the repo). Missing: this
#              second mock is skipped and `info` has no pagerduty_shared_* keys.
#              Both PagerDuty mocks match the paths without the server's /v2
#              base path: the endpoint is http://127.0.0.1:14011/enqueue (and
#              /change/enqueue); /v2/enqueue gets Prism's 404.
#   Central    PRISM_CENTRAL_PORT   (14014) serving Central's REST API v1
#              (tests/contracts/stackrox/*.swagger.json, Apache-2.0, merged
#              into one document in the run dir at start): namespaces,
#              clusters, alerts. No security scheme: tokens are not checked.
#
# Prism runs WITHOUT --errors: a request that breaks the contract still gets
# an answer (422/400/401, see below), and every violation is reported in the
# `sl-violations` response header, a JSON array of
#   {"location":["request","body","fields"],"severity":"Error","code":"required",
#    "message":"Request body must have required property 'fields'"}
# Request-side problems have location[0] == "request" (body, query, header,
# path); response-side ones (the mock's own example breaking the spec) have
# "response". Tests assert on request-side entries with severity "Error".
# Answers come from the documents' static examples (no -d/--dynamic), so they
# are the same on every call, whatever the request (the repo contract's
# PagerDuty dedup_key is always "srv01/HTTP"). Jira's operations are secured:
# without an `Authorization: Basic <anything>` or `Bearer <anything>` header
# Prism answers 401 + violation (credentials are not checked). PagerDuty's are
# not.
#
# Usage: scripts/prism.sh COMMAND
#   install   npm install the pinned prism-cli into $HERALD_STACK_DIR/prism
#             (a private prefix; once, again when the version changes)
#   start     install if needed, start the mocks, wait until they answer
#             (PRISM_START_TIMEOUT, 60 s); on running instances it does nothing
#   stop      stop the mocks started by this script, wait for their exit
#   restart   stop + start
#   status    exit 0 iff our mocks run and answer (the shared-spec PagerDuty
#             one only if that spec exists)
#   info      print URLs, spec paths, logs, pids (key=value lines; the
#             pagerduty_shared_* ones only if the shared spec exists)
#
# Environment:
#   HERALD_STACK_DIR       state root (default ~/.cache/herald-stack)
#   PRISM_JIRA_PORT        Jira mock port      (default 14010)
#   PRISM_PAGERDUTY_PORT   PagerDuty mock port (default 14011)
#   PRISM_JIRA_FOUND_PORT  "issue found" Jira mock port (default 14012)
#   PRISM_PAGERDUTY_SHARED_PORT  shared-spec PagerDuty mock port (default 14013)
#   PRISM_CENTRAL_PORT     Central API mock port (default 14014)
#   PRISM_SHARED_SPECS     dir holding the optional shared
#                          pagerduty-events-v2.json (default <repo>/../shared/specs)
#   PRISM_START_TIMEOUT    seconds to wait for the mocks (default 60)
#   PRISM_NODE             node binary (default: node from PATH, must be 18+)
set -euo pipefail
LOG_NAME=prism.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PRISM_VERSION=5.14.2
PRISM_PKG="@stoplight/prism-cli@$PRISM_VERSION"

STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
PREFIX="$STACK_DIR/prism"
PRISM_MAIN="$PREFIX/node_modules/@stoplight/prism-cli/dist/index.js"
PRISM_MARK="$PREFIX/.herald-complete"
RUN_DIR="$STACK_DIR/run"
PRISM_RUN="$RUN_DIR/prism"
# Serialises start/stop/restart/install across parallel callers (test binaries
# may all call `start`). Closed in the Prism children (9>&-).
LOCK_FILE="$RUN_DIR/.prism.lock"

HOST=127.0.0.1
JIRA_PORT=${PRISM_JIRA_PORT:-14010}
PD_PORT=${PRISM_PAGERDUTY_PORT:-14011}
FOUND_PORT=${PRISM_JIRA_FOUND_PORT:-14012}
PD_SHARED_PORT=${PRISM_PAGERDUTY_SHARED_PORT:-14013}
CENTRAL_PORT=${PRISM_CENTRAL_PORT:-14014}
JIRA_SPEC="$REPO_DIR/tests/contracts/jira-v2.json"
FOUND_SPEC="$PRISM_RUN/jira-v2-found.json"
PD_SPEC="$REPO_DIR/tests/contracts/pagerduty-events-v2.json"
STACKROX_SPECS="$REPO_DIR/tests/contracts/stackrox"
CENTRAL_SPEC="$PRISM_RUN/stackrox-central.json"
SHARED_SPECS=${PRISM_SHARED_SPECS:-$(cd "$REPO_DIR/.." && pwd)/shared/specs}
PD_SHARED_SPEC="$SHARED_SPECS/pagerduty-events-v2.json"
START_TIMEOUT=${PRISM_START_TIMEOUT:-60}
STOP_TIMEOUT=20
NODE=${PRISM_NODE:-node}

# name -> port / spec / probe (a GET that must get an HTTP answer from Prism;
# any status will do, Prism answers unknown routes with 404/405 itself).
MOCKS=(jira jira-found pagerduty pagerduty-shared central)
declare -A PORT=([jira]=$JIRA_PORT [jira-found]=$FOUND_PORT [pagerduty]=$PD_PORT
  [pagerduty-shared]=$PD_SHARED_PORT [central]=$CENTRAL_PORT)
declare -A SPEC=([jira]=$JIRA_SPEC [jira-found]=$FOUND_SPEC [pagerduty]=$PD_SPEC
  [pagerduty-shared]=$PD_SHARED_SPEC [central]=$CENTRAL_SPEC)
declare -A PROBE=([jira]=/rest/api/2/serverInfo [jira-found]=/rest/api/2/serverInfo [pagerduty]=/enqueue
  [pagerduty-shared]=/enqueue [central]=/v1/clusters)

pid_file() { echo "$RUN_DIR/prism-$1.pid"; }
log_file() { echo "$PRISM_RUN/$1.log"; }

# ---------------------------------------------------------------- install

node_ok() {
  local v
  v=$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null) || return 1
  ((v >= 18))
}

installed() {
  [[ -f $PRISM_MARK && $(<"$PRISM_MARK") == "$PRISM_PKG" && -f $PRISM_MAIN ]]
}

install_prism() {
  installed && return 0
  command -v "$NODE" >/dev/null || die "node not found (apt-get install nodejs npm, or set PRISM_NODE)"
  node_ok || die "$NODE is $("$NODE" --version 2>/dev/null): prism-cli $PRISM_VERSION needs Node 18+"
  command -v npm >/dev/null || die "npm not found (apt-get install npm)"
  local t0=$SECONDS out
  log "installing $PRISM_PKG into $PREFIX"
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  # A package.json of our own makes $PREFIX a project root, so npm installs
  # into $PREFIX/node_modules and not into some package.json above it.
  printf '{"name":"herald-prism","private":true}\n' >"$PREFIX/package.json"
  out=$(cd "$PREFIX" && npm install --no-audit --no-fund --no-update-notifier --loglevel=error \
    --save-exact "$PRISM_PKG" 2>&1) || {
    echo "$out" >&2
    die "npm install $PRISM_PKG failed"
  }
  [[ -f $PRISM_MAIN ]] || die "npm install finished but $PRISM_MAIN is missing"
  local v
  v=$("$NODE" -p "require('$PREFIX/node_modules/@stoplight/prism-cli/package.json').version")
  [[ $v == "$PRISM_VERSION" ]] || die "installed prism-cli is $v, want $PRISM_VERSION"
  # Written last: a prefix without the marker is reinstalled.
  echo "$PRISM_PKG" >"$PRISM_MARK"
  log "installed $PRISM_PKG in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- process

# The pid of OUR Prism for mock $1 (this prefix, this port).
our_pid() { pid_from_file "$(pid_file "$1")" "$PRISM_MAIN mock " " --port ${PORT[$1]} "; }

# True iff our Prism $2 for mock $1 serves the spec it should (one started by
# an older version of this script may serve another document on that port).
serves_spec() { [[ $(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null) == *" mock ${SPEC[$1]} "* ]]; }

# True iff Prism on port $2 answers an HTTP request (any status code).
answers() {
  local code
  code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$HOST:$2${PROBE[$1]}" 2>/dev/null) || true
  [[ $code =~ ^[1-5][0-9][0-9]$ ]]
}

# The mocks this run serves: the shared-spec PagerDuty only when that spec is
# there.
active_mocks() {
  local m
  for m in "${MOCKS[@]}"; do
    [[ $m == pagerduty-shared && ! -f ${SPEC[pagerduty-shared]} ]] && continue
    echo "$m"
  done
}

spawn() {
  local m=$1 port=${PORT[$1]} spec=${SPEC[$1]} lf
  lf=$(log_file "$m")
  : >"$lf"
  # setsid: survive the calling shell and not get its Ctrl-C; without job
  # control it execs in place, so $! is the node process. No --errors: broken
  # requests are answered and reported in sl-violations. No --dynamic: static
  # examples. `--multiprocess false` (the default; said explicitly): no forked
  # child, one process per mock, so the pid file names the one to stop.
  setsid "$NODE" "$PRISM_MAIN" mock "$spec" --host "$HOST" --port "$port" \
    --multiprocess false --errors false --dynamic false \
    >>"$lf" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file "$m")"
}

# The "found" variant of the Jira contract: the searches' `one` example first
# (Prism's static mode answers the first example).
make_found_spec() {
  "$NODE" -e '
    const fs = require("fs");
    const [src, dst] = process.argv.slice(1);
    const d = JSON.parse(fs.readFileSync(src, "utf8"));
    for (const p of ["/rest/api/2/search", "/rest/api/3/search/jql"]) {
      const c = d.paths[p].get.responses["200"].content["application/json"];
      if (!c.examples || !c.examples.one) throw new Error(p + ": no example named one");
      const { one, ...rest } = c.examples;
      c.examples = { one, ...rest };
    }
    d.info["x-herald"].variant = "found: generated by scripts/prism.sh; searches answer one issue (OPS-1)";
    fs.writeFileSync(dst + ".tmp", JSON.stringify(d));
    fs.renameSync(dst + ".tmp", dst);
  ' "$JIRA_SPEC" "$FOUND_SPEC" || die "could not write $FOUND_SPEC from $JIRA_SPEC"
}

# Central's three API documents as one (paths and definitions do not overlap),
# so one endpoint serves every call herald makes.
make_central_spec() {
  "$NODE" -e '
    const fs = require("fs");
    const [dir, dst] = process.argv.slice(1);
    const files = ["alert_service", "cluster_service", "namespace_service"];
    const out = { swagger: "2.0", info: { title: "StackRox Central API v1 (merged by scripts/prism.sh)", version: "bed4a7b" },
      consumes: ["application/json"], produces: ["application/json"], paths: {}, definitions: {} };
    for (const f of files) {
      const d = JSON.parse(fs.readFileSync(`${dir}/${f}.swagger.json`, "utf8"));
      for (const [k, v] of Object.entries(d.paths)) {
        if (out.paths[k]) throw new Error(`${f}: path ${k} twice`);
        out.paths[k] = v;
      }
      for (const [k, v] of Object.entries(d.definitions)) {
        if (out.definitions[k] && JSON.stringify(out.definitions[k]) !== JSON.stringify(v))
          throw new Error(`${f}: definition ${k} differs`);
        out.definitions[k] = v;
      }
    }
    fs.writeFileSync(dst + ".tmp", JSON.stringify(out));
    fs.renameSync(dst + ".tmp", dst);
  ' "$STACKROX_SPECS" "$CENTRAL_SPEC" || die "could not write $CENTRAL_SPEC from $STACKROX_SPECS"
}

# True iff all mocks $@ answer; dies if one of them exited.
all_ready() {
  local m pending=0
  for m in "$@"; do
    our_pid "$m" >/dev/null ||
      startup_failed "$(pid_file "$m")" 30 "prism $m exited during startup (log: $(log_file "$m"))" "$(log_file "$m")"
    answers "$m" "${PORT[$m]}" || pending=1
  done
  ((pending == 0))
}

wait_ready() {
  wait_for "$START_TIMEOUT" 0.2 all_ready "$@" ||
    die "prism mocks ($*) did not answer within ${START_TIMEOUT}s (logs: $PRISM_RUN/*.log)"
}

start_prism() {
  install_prism
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  [[ -f $JIRA_SPEC ]] || die "Jira contract $JIRA_SPEC missing"
  [[ -f $PD_SPEC ]] || die "PagerDuty contract $PD_SPEC missing"
  [[ -f $PD_SHARED_SPEC ]] || log "$PD_SHARED_SPEC not found (no ../shared beside the repo?): shared-spec PagerDuty mock skipped"
  mkdir -p "$PRISM_RUN"
  local m pid t0=$SECONDS started=()
  local -a mocks
  mapfile -t mocks < <(active_mocks)
  for m in "${mocks[@]}"; do
    if pid=$(our_pid "$m"); then
      if serves_spec "$m" "$pid"; then
        log "$m mock already running (pid $pid)"
        continue
      fi
      log "$m mock (pid $pid) serves another spec than ${SPEC[$m]}: restarting it"
      stop_one "$m"
    fi
    rm -f "$(pid_file "$m")"
    port_open "$HOST" "${PORT[$m]}" && die "port ${PORT[$m]} ($m) is already in use by another process (not started by this script)"
    [[ $m == jira-found ]] && make_found_spec
    [[ $m == central ]] && make_central_spec
    spawn "$m"
    started+=("$m")
    log "starting prism $PRISM_VERSION $m mock (pid $(<"$(pid_file "$m")")) on $HOST:${PORT[$m]}"
  done
  wait_ready "${mocks[@]}"
  ((${#started[@]} > 0)) && log "mocks up after $((SECONDS - t0))s"
  for m in "${mocks[@]}"; do
    log "$m  http://$HOST:${PORT[$m]}  spec ${SPEC[$m]}  log $(log_file "$m")"
  done
}

stop_one() {
  local m=$1 pid
  if ! pid=$(our_pid "$m"); then
    rm -f "$(pid_file "$m")"
    return 0
  fi
  stop_pid "$pid" "$m mock" "$STOP_TIMEOUT"
  rm -f "$(pid_file "$m")"
}

stop_prism() {
  local m
  for m in "${MOCKS[@]}"; do stop_one "$m"; done
  log "mocks stopped"
}

status_prism() {
  local m pid rc=0 mocks
  mapfile -t mocks < <(active_mocks)
  for m in "${mocks[@]}"; do
    if ! pid=$(our_pid "$m"); then
      echo "prism $m: not running"
      rc=1
    elif answers "$m" "${PORT[$m]}"; then
      echo "prism $m: running (pid $pid) on http://$HOST:${PORT[$m]}"
    else
      echo "prism $m: process $pid alive but http://$HOST:${PORT[$m]} does not answer"
      rc=1
    fi
  done
  [[ -f $PD_SHARED_SPEC ]] || echo "prism pagerduty-shared: skipped ($PD_SHARED_SPEC not found)"
  return "$rc"
}

print_info() {
  local jpid fpid ppid spid pd_url="http://$HOST:$PD_PORT" shared_url="http://$HOST:$PD_SHARED_PORT"
  jpid=$(our_pid jira) || jpid=
  fpid=$(our_pid jira-found) || fpid=
  ppid=$(our_pid pagerduty) || ppid=
  spid=$(our_pid pagerduty-shared) || spid=
  cat <<EOF
host=$HOST
jira_port=$JIRA_PORT
jira_url=http://$HOST:$JIRA_PORT
jira_spec=$JIRA_SPEC
jira_log=$(log_file jira)
jira_pid_file=$(pid_file jira)
jira_pid=$jpid
jira_found_port=$FOUND_PORT
jira_found_url=http://$HOST:$FOUND_PORT
jira_found_spec=$FOUND_SPEC
jira_found_log=$(log_file jira-found)
jira_found_pid_file=$(pid_file jira-found)
jira_found_pid=$fpid
pagerduty_port=$PD_PORT
pagerduty_url=$pd_url
pagerduty_enqueue_url=$pd_url/enqueue
pagerduty_spec=$PD_SPEC
pagerduty_log=$(log_file pagerduty)
pagerduty_pid_file=$(pid_file pagerduty)
pagerduty_pid=$ppid
central_port=$CENTRAL_PORT
central_url=http://$HOST:$CENTRAL_PORT
central_spec=$CENTRAL_SPEC
central_log=$(log_file central)
violations_header=sl-violations
prism_version=$PRISM_VERSION
prism_prefix=$PREFIX
EOF
  # Only with the shared spec: tests check it too when these keys are there.
  [[ -f $PD_SHARED_SPEC ]] || return 0
  cat <<EOF
pagerduty_shared_port=$PD_SHARED_PORT
pagerduty_shared_url=$shared_url
pagerduty_shared_enqueue_url=$shared_url/enqueue
pagerduty_shared_spec=$PD_SHARED_SPEC
pagerduty_shared_log=$(log_file pagerduty-shared)
pagerduty_shared_pid_file=$(pid_file pagerduty-shared)
pagerduty_shared_pid=$spid
EOF
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install)
    take_lock "$LOCK_FILE"
    install_prism
    ;;
  start)
    take_lock "$LOCK_FILE"
    start_prism
    ;;
  stop)
    take_lock "$LOCK_FILE"
    stop_prism
    ;;
  restart)
    take_lock "$LOCK_FILE"
    stop_prism
    start_prism
    ;;
  status) status_prism ;;
  info) print_info ;;
  *) usage ;;
esac
