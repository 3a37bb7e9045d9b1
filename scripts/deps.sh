#!/usr/bin/env bash
# Installs what building and testing herald needs on a fresh Debian machine,
# idempotently: the C toolchain pieces rdkafka's bundled librdkafka builds
# with, Java and Maven for the Kafka test broker. Rust comes from rustup.
set -euo pipefail

need=()
for pkg in cmake libssl-dev zlib1g-dev libcurl4-openssl-dev pkg-config openssl curl openjdk-17-jre-headless maven prometheus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "deps.sh: installing ${need[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps.sh: cargo not found; install Rust with rustup" >&2; exit 1; }
for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp" >/dev/null 2>&1 || true
done
