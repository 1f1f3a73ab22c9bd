#!/usr/bin/env bash
# Stops what deploy/run.sh started, by the PIDs it recorded under var/pids.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stop_all() {
    local pids_dir="$VAR_DIR/pids"
    [ -d "$pids_dir" ] || return 0
    local files=()
    # Services first, the cluster last, so that services flush to a live cluster.
    for file in "$pids_dir"/*.pid; do
        [ -e "$file" ] || continue
        case "$(basename "$file")" in cluster.pid) ;; *) files+=("$file") ;; esac
    done
    [ -e "$pids_dir/cluster.pid" ] && files+=("$pids_dir/cluster.pid")
    for file in "${files[@]}"; do
        local pid
        pid="$(cat "$file")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            local deadline=$((SECONDS + 15))
            while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && { log "$(basename "$file" .pid) did not stop; killing it"; kill -KILL "$pid"; }
            log "stopped $(basename "$file" .pid) ($pid)"
        fi
        rm -f "$file"
    done
}
stop_all
