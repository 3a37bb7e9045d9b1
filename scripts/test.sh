#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: installs what is
# missing, starts the real Kafka broker if it is not running (and stops it
# again at the end), checks formatting and lints, runs every test, then
# checks the deployment material (scripts/deploy-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
started=0
started_rsyslog=0
started_smtp=0
started_prism=0
started_moto=0
cleanup() {
  if [[ $started_moto == 1 ]]; then scripts/moto.sh stop || true; fi
  if [[ $started_prism == 1 ]]; then scripts/prism.sh stop || true; fi
  if [[ $started_smtp == 1 ]]; then scripts/smtp.sh stop || true; fi
  if [[ $started == 1 ]]; then scripts/kafka.sh stop || true; fi
  if [[ $started_rsyslog == 1 ]]; then scripts/rsyslog.sh stop || true; fi
}
trap cleanup EXIT
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started=1
fi
if ! scripts/rsyslog.sh status >/dev/null 2>&1; then
  scripts/rsyslog.sh start
  started_rsyslog=1
fi
if ! scripts/smtp.sh status >/dev/null 2>&1; then
  scripts/smtp.sh start
  started_smtp=1
fi
if ! scripts/prism.sh status >/dev/null 2>&1; then
  scripts/prism.sh start
  started_prism=1
fi
if ! scripts/moto.sh status >/dev/null 2>&1; then
  scripts/moto.sh start
  started_moto=1
fi

scripts/google-apis.sh install

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast 2>&1 | tee target/test-output.txt
# The deployment material (systemd unit, Kubernetes manifests, Prometheus
# rules, Dockerfile) with the real tools, and the binary the tests just built.
scripts/deploy-check.sh target/debug/herald
