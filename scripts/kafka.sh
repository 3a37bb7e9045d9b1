#!/usr/bin/env bash
# Real single-node Apache Kafka 4.x (KRaft, combined broker+controller) for
# herald's tests. The broker is assembled from Maven Central jars (see
# scripts/kafka/pom.xml), because only package registries are reachable: no
# tarball download, no docker.
#
# Usage: scripts/kafka.sh COMMAND
#   install                       resolve the jars into the tools folder (once)
#   start                         install if needed, start a FRESH cluster
#                                 (KAFKA_KEEP_DATA=1 keeps the data), wait until
#                                 it answers, create the default topics
#   stop                          stop the broker started by this script
#   restart-broker                stop + start keeping data and ports
#   status                        exit 0 iff our broker runs and answers
#   create-topic NAME PARTITIONS  create a topic (no error if it exists)
#   run-class CLASS [ARGS...]     run a Kafka CLI class with the broker's jars,
#                                 e.g. org.apache.kafka.tools.ConsoleProducer
#   info                          print endpoints, credentials and file paths
#
# Environment:
#   HERALD_STACK_DIR       tools + state root (default ~/.cache/herald-stack)
#   KAFKA_PORT             PLAINTEXT listener       (default 9092)
#   KAFKA_SASL_PORT        SASL_PLAINTEXT listener  (default 9094)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener (default 9095)
#   KAFKA_KEEP_DATA=1      make `start` reuse the existing data dir
#   KAFKA_HEAP_OPTS        broker heap (default "-Xmx512m -Xms256m")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker (default 90)
#   JAVA_HOME              Java 17+ to use (default: java on PATH)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF_SRC="$SCRIPT_DIR/kafka"
POM="$CONF_SRC/pom.xml"
# The pom is the single place where the version is pinned.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)

STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
JARS_DIR="$STACK_DIR/kafka-$KAFKA_VERSION"
RUN_DIR="$STACK_DIR/run"
PID_FILE="$RUN_DIR/kafka.pid"
DATA_DIR="$RUN_DIR/kafka-data"
LOG_DIR="$RUN_DIR/kafka-logs"
CONF_DIR="$RUN_DIR/kafka-conf"
SERVER_PROPS="$CONF_DIR/server.properties"
ADMIN_PROPS="$CONF_DIR/admin.properties"

HOST=127.0.0.1
PORT=${KAFKA_PORT:-9092}
SASL_PORT=${KAFKA_SASL_PORT:-9094}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9095}
BOOTSTRAP="$HOST:$PORT"
SASL_USER=herald
SASL_PASSWORD=herald-secret
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=20
DEFAULT_TOPICS=("rhacs-alerts:3" "rhacs-alerts-dlq:1")

JAVA_BIN=${JAVA_HOME:+$JAVA_HOME/bin/}java
# CLI JVMs are short-lived: favour startup time over throughput.
TOOLS_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$CONF_SRC/tools-log4j2.yaml")

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

check_java() {
  command -v "$JAVA_BIN" >/dev/null || die "java not found (need Java 17+)"
  local v
  v=$("$JAVA_BIN" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [[ ${v:-0} -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, $JAVA_BIN is version ${v:-unknown}"
}

# ---------------------------------------------------------------- install

install_jars() {
  # The marker holds the pom's hash, so editing the pom (not only the version)
  # triggers a re-resolve.
  local want
  want=$(sha256sum "$POM" | cut -d' ' -f1)
  [[ -f $JARS_DIR/.complete && $(<"$JARS_DIR/.complete") == "$want" ]] && return 0

  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  mkdir -p "$STACK_DIR"
  # Parallel test runs may race to install; the loser just waits.
  exec 9>"$STACK_DIR/.kafka-install.lock"
  flock 9
  if [[ -f $JARS_DIR/.complete && $(<"$JARS_DIR/.complete") == "$want" ]]; then
    exec 9>&-
    return 0
  fi

  local tmp="$JARS_DIR.tmp.$$" mvn_log="$STACK_DIR/kafka-install.log"
  rm -rf "$tmp"
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $JARS_DIR (log: $mvn_log)"
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies -Dkafka.jars.dir="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "mvn failed to resolve the Kafka jars"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar && -f $tmp/kafka-tools-$KAFKA_VERSION.jar ]] ||
    die "mvn finished but the Kafka jars are missing in $tmp"
  echo "$want" >"$tmp/.complete"
  # Swap in atomically so a half-copied folder never looks installed.
  rm -rf "$JARS_DIR"
  mv "$tmp" "$JARS_DIR"
  exec 9>&-
  log "installed $(find "$JARS_DIR" -name '*.jar' | wc -l) jars"
}

run_class() {
  "$JAVA_BIN" "${TOOLS_JVM_OPTS[@]}" -cp "$JARS_DIR/*" "$@"
}

# ---------------------------------------------------------------- config

write_conf() {
  mkdir -p "$CONF_DIR" "$LOG_DIR"
  local jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
  jaas_plain+=" username=\"$SASL_USER\" password=\"$SASL_PASSWORD\" user_$SASL_USER=\"$SASL_PASSWORD\";"
  local jaas_scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
  cat >"$SERVER_PROPS" <<EOF
# Generated by scripts/kafka.sh; edits are overwritten on every start.
node.id=1
process.roles=broker,controller
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT

sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$jaas_scram

log.dirs=$DATA_DIR
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
# 50 (the default) makes the first consumer-group join slow on 2 cores
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
  # Bounded timeouts so a half-up broker makes the admin CLI fail fast
  # instead of hanging for the default 60 s.
  cat >"$ADMIN_PROPS" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
  # Ready-made client configs for the SASL listener (tests, manual checks).
  local mech jaas
  for mech in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
    if [[ $mech == PLAIN ]]; then
      jaas="org.apache.kafka.common.security.plain.PlainLoginModule required"
    else
      jaas="org.apache.kafka.common.security.scram.ScramLoginModule required"
    fi
    cat >"$CONF_DIR/client-sasl-${mech,,}.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$mech
sasl.jaas.config=$jaas username="$SASL_USER" password="$SASL_PASSWORD";
EOF
  done
}

format_storage() {
  # Cluster ids are 16 random bytes in URL-safe base64 without padding; one
  # starting with '-' would be read as a CLI flag, so draw again.
  local cid
  while :; do
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $cid != -* ]] && break
  done
  # --standalone: this node is the only voter of a dynamic (KIP-853) quorum.
  # SCRAM credentials must be written into the metadata log at format time.
  if ! run_class kafka.tools.StorageTool format --standalone \
    --cluster-id "$cid" --config "$SERVER_PROPS" \
    --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" \
    >"$LOG_DIR/format.log" 2>&1; then
    cat "$LOG_DIR/format.log" >&2
    die "storage format failed"
  fi
}

# ---------------------------------------------------------------- process

# True for a live (non-zombie) process.
pid_alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

# Prints the broker pid iff the pid file points at OUR broker (guards
# against a recycled pid).
our_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $SERVER_PROPS" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

topic_cmd() {
  timeout 60 "$JAVA_BIN" "${TOOLS_JVM_OPTS[@]}" -cp "$JARS_DIR/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_PROPS" "$@"
}

answering() { port_open "$PORT" && topic_cmd --list >/dev/null 2>&1; }

wait_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! pid_alive "$pid"; then
      tail -n 40 "$LOG_DIR/server.log" "$LOG_DIR/kafka.out" >&2 2>/dev/null || true
      rm -f "$PID_FILE"
      die "broker exited during startup (logs: $LOG_DIR)"
    fi
    answering && return 0
    sleep 1
  done
  die "broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (logs: $LOG_DIR/server.log)"
}

create_topic() {
  local name=$1 parts=$2 out
  [[ $parts =~ ^[1-9][0-9]*$ ]] || die "bad partition count: $parts"
  if out=$(topic_cmd --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 2>&1) ||
    grep -q "already exists" <<<"$out"; then
    log "topic $name ready"
  else
    echo "$out" >&2
    die "could not create topic $name"
  fi
}

# Topic creation returns once the controller committed it; wait until every
# partition also has a leader so producers don't start with retries.
wait_partitions_online() {
  local deadline=$((SECONDS + 20)) out
  while ((SECONDS < deadline)); do
    out=$(topic_cmd --describe --unavailable-partitions 2>/dev/null) && [[ -z $out ]] && return 0
    sleep 0.5
  done
  log "warning: some partitions still have no leader: $out"
}

start_broker() {
  check_java
  install_jars
  local pid
  if pid=$(our_pid); then
    log "broker already running (pid $pid)"
    write_conf_if_missing
  else
    rm -f "$PID_FILE"
    local p
    for p in "$PORT" "$SASL_PORT" "$CONTROLLER_PORT"; do
      port_open "$p" && die "port $p is already in use by another process (not started by this script)"
    done
    mkdir -p "$RUN_DIR"
    if [[ ${KAFKA_KEEP_DATA:-0} == 1 && -f $DATA_DIR/meta.properties ]]; then
      write_conf
      log "keeping existing data in $DATA_DIR"
    else
      rm -rf "$DATA_DIR"
      write_conf
      format_storage
    fi
    local heap
    read -ra heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
    # setsid: the broker must survive the calling shell/test harness and not
    # get its Ctrl-C; stdout only carries JVM crash output (log4j goes to files).
    setsid "$JAVA_BIN" "${heap[@]}" -server \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:ErrorFile="$LOG_DIR/hs_err_pid%p.log" \
      -Djava.awt.headless=true \
      "-Dlog4j2.configurationFile=$CONF_SRC/log4j2.yaml" "-Dkafka.logs.dir=$LOG_DIR" \
      -cp "$JARS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
      >>"$LOG_DIR/kafka.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "starting Kafka $KAFKA_VERSION (pid $pid), waiting up to ${START_TIMEOUT}s"
  fi
  wait_ready "$pid"
  local t
  for t in "${DEFAULT_TOPICS[@]}"; do
    create_topic "${t%%:*}" "${t##*:}"
  done
  wait_partitions_online
  log "broker up: PLAINTEXT $BOOTSTRAP, SASL_PLAINTEXT $HOST:$SASL_PORT ($SASL_USER/$SASL_PASSWORD)"
  log "logs: $LOG_DIR/server.log (JVM stdout: $LOG_DIR/kafka.out)"
}

write_conf_if_missing() { [[ -f $SERVER_PROPS && -f $ADMIN_PROPS ]] || write_conf; }

stop_broker() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PID_FILE"
    log "broker not running"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if pid_alive "$pid"; then
    log "broker ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "broker stopped"
}

status_broker() {
  local pid
  if ! pid=$(our_pid); then
    echo "kafka: not running"
    return 1
  fi
  write_conf_if_missing
  if answering; then
    echo "kafka: running (pid $pid) on $BOOTSTRAP"
  else
    echo "kafka: process $pid alive but not answering on $BOOTSTRAP"
    return 1
  fi
}

print_info() {
  cat <<EOF
version=$KAFKA_VERSION
bootstrap=$BOOTSTRAP
sasl_bootstrap=$HOST:$SASL_PORT
sasl_user=$SASL_USER
sasl_password=$SASL_PASSWORD
controller=$HOST:$CONTROLLER_PORT
jars=$JARS_DIR
server_properties=$SERVER_PROPS
client_sasl_plain=$CONF_DIR/client-sasl-plain.properties
client_scram_sha_256=$CONF_DIR/client-sasl-scram-sha-256.properties
client_scram_sha_512=$CONF_DIR/client-sasl-scram-sha-512.properties
server_log=$LOG_DIR/server.log
pid_file=$PID_FILE
EOF
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install) install_jars ;;
  start) start_broker ;;
  stop) stop_broker ;;
  restart-broker)
    stop_broker
    KAFKA_KEEP_DATA=1 start_broker
    ;;
  status) status_broker ;;
  create-topic)
    [[ $# -eq 2 ]] || die "usage: $0 create-topic NAME PARTITIONS"
    our_pid >/dev/null || die "broker not running (run: $0 start)"
    write_conf_if_missing
    create_topic "$1" "$2"
    ;;
  run-class)
    [[ $# -ge 1 ]] || die "usage: $0 run-class CLASS [ARGS...]"
    check_java
    install_jars
    run_class "$@"
    ;;
  info) print_info ;;
  *)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
    ;;
esac
