#!/usr/bin/env bash
# `make bench`: criterion micro-benchmarks, then herald-bench end to end with
# the release binary against the real broker and rsyslog, in three modes:
#   throughput   a backlog of ALERTS (default 200000) to syslog + HEC + webhook,
#                with the machine's limit measured in the same run
#   latency      RATE alerts/s (default 2000) for SECONDS (default 60)
#   ledger-size  LEDGER_ALERTS distinct ids (default 1000000)
# MODES="throughput latency" runs a subset; CRITERION=0 skips criterion.
# Starts the broker and rsyslog if they are not running and stops them after.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
if [[ ${CRITERION:-1} != 0 ]]; then
  cargo bench --locked
fi
cargo build --release --locked --bins
started_kafka=0
started_rsyslog=0
cleanup() {
  if [[ $started_kafka == 1 ]]; then scripts/kafka.sh stop || true; fi
  if [[ $started_rsyslog == 1 ]]; then scripts/rsyslog.sh stop || true; fi
}
trap cleanup EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started_kafka=1
fi
if ! scripts/rsyslog.sh status >/dev/null 2>&1; then
  scripts/rsyslog.sh start
  started_rsyslog=1
fi
info=$(scripts/rsyslog.sh info)
syslog_port=$(sed -n 's/^tcp_port=//p' <<<"$info")
syslog_out=$(sed -n 's/^out_tcp=//p' <<<"$info")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
for mode in ${MODES:-throughput latency ledger-size}; do
  echo "== herald-bench --mode $mode"
  case $mode in
    throughput) extra=(--alerts "${ALERTS:-200000}") ;;
    latency) extra=(--rate "${RATE:-2000}" --seconds "${SECONDS_RUN:-60}") ;;
    ledger-size) extra=(--alerts "${LEDGER_ALERTS:-1000000}") ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  target/release/herald-bench --mode "$mode" --syslog "127.0.0.1:$syslog_port" \
    --syslog-out "$syslog_out" "${extra[@]}"
done
