#!/usr/bin/env bash
# Installs what building and testing herald needs on a fresh Debian machine,
# idempotently: the C toolchain pieces rdkafka's bundled librdkafka builds
# with, Java and Maven for the Kafka test broker, Prometheus for the metrics
# tests. Rust comes from rustup.
set -euo pipefail

LOG_NAME=deps.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# prometheus: promtool and a real Prometheus for the tests (its service is
# not started: apt_install).
need=()
for pkg in cmake libssl-dev zlib1g-dev libcurl4-openssl-dev pkg-config openssl curl openjdk-17-jre-headless maven prometheus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
apt_install "${need[@]}"
command -v cargo >/dev/null || { echo "deps.sh: cargo not found; install Rust with rustup" >&2; exit 1; }
for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp" >/dev/null 2>&1 || true
done
