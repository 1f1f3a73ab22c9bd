# Shared by deploy/*.sh: locate the repository, install what is missing, build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR_DIR="${EMPORIUM_VAR:-$ROOT/var}"
export EMPORIUM_VAR="$VAR_DIR"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Swift lives in /opt/swift on Emporium's machines; elsewhere it must be on PATH already.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

# Debian packages Emporium needs: librdkafka (and its mock cluster), SQLite, kcat for baselines and tests.
ensure_dependencies() {
    local missing=() sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    pkg-config --exists rdkafka 2>/dev/null || missing+=(librdkafka-dev)
    [ -f /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
    command -v kcat >/dev/null 2>&1 || missing+=(kcat)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    if [ "${EMPORIUM_TEST_TOOLS:-0}" = 1 ]; then
        # The tests' Python tools live in a virtual environment made with Debian's own Python (see below).
        /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3 python3-venv)
        # The watchdog prints every thread's stack with gdb when the suite hangs; a test watches syncs with strace.
        command -v gdb >/dev/null 2>&1 || missing+=(gdb)
        command -v strace >/dev/null 2>&1 || missing+=(strace)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ "${EMPORIUM_TEST_TOOLS:-0}" = 1 ]; then
        # The tests drive a real browser and check the API and metrics with Python's own tools.
        command -v chromium >/dev/null 2>&1 || {
            log "installing chromium"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
        }
        ensure_test_python
    fi
    if ! command -v swift >/dev/null 2>&1; then
        echo "swift is not installed: Emporium needs Swift 6.1 or later on PATH" >&2
        exit 1
    fi
}

# The Python the tests run (schemathesis, prometheus-client, PyYAML, the SMTP sink): a virtual environment under
# .build-python made with Debian's /usr/bin/python3, first on PATH from here on. A stock Debian refuses a
# system-wide pip install ("externally managed"), and the suite must not depend on whichever Python is on PATH.
ensure_test_python() {
    local venv="$ROOT/.build-python"
    [ -x "$venv/bin/python" ] || {
        log "making a Python virtual environment in $venv"
        /usr/bin/python3 -m venv "$venv"
    }
    "$venv/bin/python" -c "import schemathesis, prometheus_client, yaml" 2>/dev/null || {
        log "installing schemathesis and prometheus-client from PyPI into $venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5 prometheus-client==0.26.0
    }
    export PATH="$venv/bin:$PATH"
}

# Builds every product in the given configuration; a second run reuses what is built.
build() {
    local configuration="$1" started=$SECONDS
    log "building ($configuration)"
    (cd "$ROOT" && swift build -c "$configuration" 2>&1) | show_build_progress
    log "built in $((SECONDS - started)) s"
    BIN_DIR="$(cd "$ROOT" && swift build -c "$configuration" --show-bin-path)"
    export BIN_DIR
}

# The compiler's "[n/total] step" lines: on a terminal, one line that counts up in place; elsewhere (CI's
# log) only a line at each tenth of the way. Every other line (warnings, errors) passes through as it is.
show_build_progress() {
    local line done total last_total=0 tenth=-1 width
    local terminal=0
    [ -t 2 ] && terminal=1
    width=$(( $( (tput cols 2>/dev/null || echo 80) ) - 20 ))
    while IFS= read -r line; do
        if [[ $line =~ ^\[([0-9]+)/([0-9]+)\]\ (.*)$ ]]; then
            done=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
            # The planning step counts to 1 of 1 before the build's own count starts.
            [ "$total" -eq "$last_total" ] || { tenth=-1; last_total=$total; }
            if [ $terminal -eq 1 ]; then
                printf '\r\033[K  [%s/%s] %s' "$done" "$total" "${BASH_REMATCH[3]:0:$width}" >&2
            elif [ $((done * 10 / total)) -gt $tenth ]; then
                tenth=$((done * 10 / total))
                printf '  build step %s of %s\n' "$done" "$total" >&2
            fi
        else
            [ $terminal -eq 1 ] && printf '\r\033[K' >&2
            printf '%s\n' "$line" >&2
        fi
    done
    [ $terminal -eq 1 ] && printf '\r\033[K' >&2
    return 0
}

# Waits until a file exists, up to a number of seconds.
wait_for_file() {
    local file="$1" seconds="$2"
    local deadline=$((SECONDS + seconds))
    until [ -s "$file" ]; do
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $file" >&2; return 1; }
        sleep 0.1
    done
}

# Runs a command in its own process group; past the limit (seconds), prints each of its processes' thread
# stacks (with gdb, when there is one) and kills the group. Returns the command's status, or 124 on timeout.
run_with_watchdog() {
    local limit="$1" pid started=$SECONDS status
    shift
    setsid "$@" &
    pid=$!
    # Its own group does not hear the terminal's Ctrl-C: pass that on.
    trap 'kill -TERM -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 130' INT TERM
    while kill -0 "$pid" 2>/dev/null; do
        if [ $((SECONDS - started)) -ge "$limit" ]; then
            log "still running after $limit s; the stacks of every process, then stopping them"
            for process in $(pgrep -g "$pid"); do
                echo "--- $(tr '\0' ' ' < "/proc/$process/cmdline" 2>/dev/null | cut -c1-200) (pid $process)" >&2
                command -v gdb >/dev/null 2>&1 && timeout 60 gdb -p "$process" -batch -ex "thread apply all bt" 2>&1 | grep -E '^(Thread|#)' >&2
            done
            kill -KILL -- "-$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 124
        fi
        sleep 2
    done
    wait "$pid" && status=0 || status=$?
    trap - INT TERM
    return "$status"
}
