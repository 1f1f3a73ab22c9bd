#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
EMPORIUM_TEST_TOOLS=1 ensure_dependencies
build debug
export EMPORIUM_BIN_DIR="$BIN_DIR"
# A minute of fuzzing: the envelope reader, stored headers, order requests and email text (deploy/fuzz.sh).
bash "$ROOT/deploy/fuzz.sh" 15
log "running the tests"
cd "$ROOT"
# Serially: the integration tests each run a whole shop, which is all two cores can take at once. Line by line,
# so that a log shows each test as it ends; under a watchdog, so that a run stuck past EMPORIUM_TEST_LIMIT
# seconds (the suite takes about 20 minutes) shows where every thread is and fails, instead of hanging.
run_with_watchdog "${EMPORIUM_TEST_LIMIT:-2700}" stdbuf -oL -eL swift test --no-parallel "$@"
