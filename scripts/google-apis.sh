#!/usr/bin/env bash
# Google's API discovery documents for the strict Cloud SCC stand-in
# (tests/integration/kit/google.rs): securitycenter.v1, sts.v1 and
# iamcredentials.v1, as PyPI google-api-python-client ships them. The
# stand-in validates every request herald makes against them (method, path,
# query, body schema).
#
# Usage: scripts/google-apis.sh COMMAND
#   install   download the pinned wheel and extract the three documents
#             (once; again when the version changes)
#   dir       install if needed, then print the documents' directory
#
# Environment:
#   HERALD_STACK_DIR   state root (default ~/.cache/herald-stack)
set -euo pipefail
LOG_NAME=google-apis.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=2.202.0
STACK_DIR=${HERALD_STACK_DIR:-$HOME/.cache/herald-stack}
DIR="$STACK_DIR/google-apis/$VERSION"
DOCS=(securitycenter.v1.json sts.v1.json iamcredentials.v1.json)

install() {
  [[ -f $DIR/.complete ]] && return 0
  take_lock "$STACK_DIR/google-apis/.lock"
  [[ -f $DIR/.complete ]] && return 0
  local tmp
  tmp=$(mktemp -d)
  log "downloading google-api-python-client==$VERSION"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    -d "$tmp" "google-api-python-client==$VERSION" >&2 \
    || die "pip download google-api-python-client==$VERSION failed"
  mkdir -p "$DIR"
  python3 - "$tmp"/google_api_python_client-*.whl "$DIR" "${DOCS[@]}" <<'PY'
import sys, zipfile
wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for n in names:
        with open(f"{out}/{n}", "wb") as f:
            f.write(z.read(f"googleapiclient/discovery_cache/documents/{n}"))
PY
  rm -rf "$tmp"
  touch "$DIR/.complete"
}

case ${1:-} in
  install) install ;;
  dir) install; echo "$DIR" ;;
  *) usage ;;
esac
