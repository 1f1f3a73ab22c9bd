#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_dependencies
build debug
export EMPORIUM_BIN_DIR="$BIN_DIR"
log "running the tests"
cd "$ROOT"
swift test "$@"
