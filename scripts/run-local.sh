#!/usr/bin/env bash
# `make run`: the local broker, a receiver that prints what it gets, herald
# with config/herald.example.toml, and one sample alert. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --locked --bin herald --example receiver
started=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $started == 1 ]]; then scripts/kafka.sh stop || true; fi
}
trap cleanup EXIT INT TERM
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started=1
fi

target/debug/examples/receiver 127.0.0.1:8080 &
pids+=($!)
target/debug/herald run --config config/herald.example.toml &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:9464/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
# A fresh alert id each run: the ledger (state_dir) remembers what it
# delivered, and would rightly skip the same alert the second time.
id=$(cat /proc/sys/kernel/random/uuid)
echo "run-local: producing tests/fixtures/alert-deployment-runtime.json as alert $id to rhacs-alerts" >&2
tr -d '\n' < tests/fixtures/alert-deployment-runtime.json |
  sed "s/8f2a6c1e-3b7d-4e59-9a41-0c5d2e7f1b93/$id/" |
  scripts/kafka.sh run-class org.apache.kafka.tools.ConsoleProducer \
    --bootstrap-server 127.0.0.1:9092 --topic rhacs-alerts
echo "run-local: the receiver prints what herald delivers; metrics at http://127.0.0.1:9464/metrics; Ctrl-C stops everything" >&2
wait
