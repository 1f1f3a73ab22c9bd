#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
EMPORIUM_TEST_TOOLS=1 ensure_dependencies
build debug
export EMPORIUM_BIN_DIR="$BIN_DIR"
log "running the tests"
cd "$ROOT"
# Serially: the integration tests each run a whole shop, which is all two cores can take at once.
swift test --no-parallel "$@"
