#!/usr/bin/env bash
# `make bench`: criterion benches, then herald-bench end to end against the
# real broker with the release binary. ALERTS=N sets the backlog size.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo bench --locked
cargo build --release --locked --bins
started=0
cleanup() {
  if [[ $started == 1 ]]; then scripts/kafka.sh stop || true; fi
}
trap cleanup EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started=1
fi
target/release/herald-bench --alerts "${ALERTS:-20000}"
