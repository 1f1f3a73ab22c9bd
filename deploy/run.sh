#!/usr/bin/env bash
# Installs what is missing, builds in release mode, and starts the embedded Kafka cluster
# (unless KAFKA_BOOTSTRAP_SERVERS names a real one).
#   deploy/run.sh            start, show the cluster, stop again
#   deploy/run.sh --detach   leave it running; deploy/stop.sh stops it
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DETACH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --detach) DETACH=1 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

ensure_dependencies
build release
mkdir -p "$VAR_DIR/pids" "$VAR_DIR/logs"
"$ROOT/deploy/stop.sh"

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    log "using the Kafka cluster at $KAFKA_BOOTSTRAP_SERVERS"
    BOOTSTRAP="$KAFKA_BOOTSTRAP_SERVERS"
else
    log "starting the embedded Kafka cluster"
    rm -f "$VAR_DIR/kafka/bootstrap"
    "$BIN_DIR/emporium" cluster --var-dir "$VAR_DIR" > "$VAR_DIR/logs/cluster.log" 2>&1 &
    echo $! > "$VAR_DIR/pids/cluster.pid"
    wait_for_file "$VAR_DIR/kafka/bootstrap" 30
    BOOTSTRAP="$(cat "$VAR_DIR/kafka/bootstrap")"
fi

kcat -b "$BOOTSTRAP" -L -m 10 | head -4
cat <<SUMMARY

Kafka:      $BOOTSTRAP   (kcat -b "$BOOTSTRAP" -L)
Logs:       $VAR_DIR/logs/
SUMMARY

if [ "$DETACH" -eq 1 ]; then
    log "left running; stop it with deploy/stop.sh"
else
    "$ROOT/deploy/stop.sh"
fi
