#!/usr/bin/env bash
# Installs what is missing, builds in release mode, starts the embedded Kafka cluster (unless
# KAFKA_BOOTSTRAP_SERVERS names a real one) and every service, places synthetic orders, waits until each
# order is confirmed or cancelled, audits the result, prints the outcome and stops everything.
#
#   deploy/run.sh [--orders N] [--rate R | --concurrency C] [--instances SERVICE=N]... [--first-port P] [--detach]
#
#   --orders N              orders to place (default 1000)
#   --rate R                place R orders/s, open loop (default: closed loop)
#   --concurrency C         clients in closed loop (default 32)
#   --instances SERVICE=N   run N instances of SERVICE (order-service, payment-service, inventory-service,
#                           notification-service) in one consumer group, sharing its database
#   --first-port P          order-service listens on P, the others on P+1, P+2, P+3; a second instance
#                           of each on P+100 and up (default 8080)
#   --detach                leave everything running, with the live console on http://127.0.0.1:8090;
#                           stop it with deploy/stop.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(order-service payment-service inventory-service notification-service)
FIRST_PORT=8080
declare -A INSTANCES=([order-service]=1 [payment-service]=1 [inventory-service]=1 [notification-service]=1)
ORDERS=1000
DETACH=0
LOAD=()

while [ $# -gt 0 ]; do
    case "$1" in
        --orders) ORDERS="$2"; shift ;;
        --rate) LOAD+=(--rate "$2"); shift ;;
        --concurrency) LOAD+=(--concurrency "$2"); shift ;;
        --instances)
            name="${2%%=*}"; count="${2#*=}"
            [ -n "${INSTANCES[$name]:-}" ] || { echo "unknown service '$name' in --instances (one of ${SERVICES[*]})" >&2; exit 2; }
            [[ "$count" =~ ^[1-9][0-9]?$ ]] || { echo "--instances $2: the count must be 1 to 99" >&2; exit 2; }
            INSTANCES[$name]="$count"; shift ;;
        --first-port)
            [[ "$2" =~ ^[1-9][0-9]*$ ]] && [ "$2" -le 65432 ] || { echo "--first-port $2: expected a port number up to 65432 (four ports and a second instance 100 above)" >&2; exit 2; }
            FIRST_PORT="$2"; shift ;;
        --detach) DETACH=1 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

declare -A PORT=([order-service]=$FIRST_PORT [payment-service]=$((FIRST_PORT + 1))
                 [inventory-service]=$((FIRST_PORT + 2)) [notification-service]=$((FIRST_PORT + 3)))

ensure_dependencies
if [ -n "${EMPORIUM_BIN_DIR:-}" ]; then
    # Binaries built already (the tests run this script against their debug build).
    BIN_DIR="$EMPORIUM_BIN_DIR"
    log "using the binaries in $BIN_DIR"
else
    build release
fi
"$ROOT/deploy/stop.sh"
mkdir -p "$VAR_DIR/pids" "$VAR_DIR/logs"

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    log "using the Kafka cluster at $KAFKA_BOOTSTRAP_SERVERS"
    BOOTSTRAP="$KAFKA_BOOTSTRAP_SERVERS"
else
    # The embedded cluster keeps its data in memory: a new one starts empty, so the services' state starts over too.
    rm -rf "$VAR_DIR/db" "$VAR_DIR/mail" "$VAR_DIR/kafka/bootstrap"
    log "starting the embedded Kafka cluster"
    "$BIN_DIR/emporium" cluster --var-dir "$VAR_DIR" > "$VAR_DIR/logs/cluster.log" 2>&1 &
    echo $! > "$VAR_DIR/pids/cluster.pid"
    wait_for_file "$VAR_DIR/kafka/bootstrap" 30
    BOOTSTRAP="$(cat "$VAR_DIR/kafka/bootstrap")"
fi

HEALTH_URLS=()
for service in "${SERVICES[@]}"; do
    for ((i = 1; i <= INSTANCES[$service]; i++)); do
        port=$((PORT[$service] + 100 * (i - 1)))
        PORT="$port" INSTANCE_ID="$service-$i" "$BIN_DIR/$service" --var-dir "$VAR_DIR" \
            > "$VAR_DIR/logs/$service-$i.log" 2>&1 &
        echo $! > "$VAR_DIR/pids/$service-$i.pid"
        HEALTH_URLS+=("http://127.0.0.1:$port/health")
    done
    log "started ${INSTANCES[$service]} × $service"
done

for url in "${HEALTH_URLS[@]}"; do
    deadline=$((SECONDS + 60))
    until curl -sf "$url" > /dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "$url did not become healthy; see $VAR_DIR/logs/" >&2; "$ROOT/deploy/stop.sh"; exit 1; }
        sleep 0.2
    done
done
log "all services healthy; placing $ORDERS orders"

STATUS=0
"$BIN_DIR/emporium" generate --url "http://127.0.0.1:$FIRST_PORT" --orders "$ORDERS" "${LOAD[@]}" --var-dir "$VAR_DIR" --customers 100 --products 200 || STATUS=$?
log "auditing the topics and databases"
"$BIN_DIR/emporium" audit --var-dir "$VAR_DIR" 2> "$VAR_DIR/logs/audit.log" || STATUS=$?

echo
echo "Peak memory (VmHWM)"
for file in "$VAR_DIR"/pids/*.pid; do
    name="$(basename "$file" .pid)"
    hwm="$(awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' "/proc/$(cat "$file")/status" 2>/dev/null || true)"
    printf '  %-24s %s\n' "$name" "${hwm:-exited}"
done

if [ "$DETACH" -eq 1 ]; then
    "$BIN_DIR/emporium" console --var-dir "$VAR_DIR" > "$VAR_DIR/logs/console.log" 2>&1 &
    echo $! > "$VAR_DIR/pids/console.pid"
    deadline=$((SECONDS + 30))
    until curl -sf --max-time 2 http://127.0.0.1:8090/snapshot > /dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "the console did not start; see $VAR_DIR/logs/console.log" >&2; break; }
        sleep 0.2
    done
fi

cat <<SUMMARY

Where to look
  console     http://127.0.0.1:8090   (live: orders/s, hop latencies, partitions and lag, journeys; with --detach)
  status      $BIN_DIR/emporium status --var-dir $VAR_DIR   (--watch to follow it, --json for scripts)
  metrics     http://127.0.0.1:$FIRST_PORT/metrics   (Prometheus text; the next three ports for the other services)
  API         http://127.0.0.1:$FIRST_PORT/orders?customerId=customer-1   (GET /orders/{id} for one order)
  products    http://127.0.0.1:${PORT[inventory-service]}/products
  Kafka       $BOOTSTRAP   (kcat -b "$BOOTSTRAP" -C -t orders -e)
  logs        $VAR_DIR/logs/
  mail        $VAR_DIR/mail/
  databases   $VAR_DIR/db/
SUMMARY

if [ "$DETACH" -eq 1 ]; then
    log "left running; stop everything with deploy/stop.sh"
else
    "$ROOT/deploy/stop.sh"
fi
exit $STATUS
