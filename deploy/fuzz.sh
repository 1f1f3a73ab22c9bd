#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer and AddressSanitizer, then runs each for a while on a copy of its corpus.
#   deploy/fuzz.sh               every target for 15 s (what deploy/test.sh runs)
#   deploy/fuzz.sh 600 envelope  one target for ten minutes
# A crash or a failed check stops that target with the input saved as var/fuzz/<target>/crash-*, and the script
# exits 1 naming it; replay it with `.build/debug/fuzz-<target> <file>`. New inputs libFuzzer finds stay in
# var/fuzz/<target>/corpus; copy the interesting ones to Fuzz/Corpus/<target>/ to keep them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECONDS_EACH="${1:-15}"
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=(envelope headers order-request mail); fi

log "building the fuzz targets with libFuzzer"
cd "$ROOT"
for target in "${TARGETS[@]}"; do
    swift build -c release --scratch-path .build-fuzz --product "fuzz-$target" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING 2>&1 \
        | grep -v "ld.gold: warning: Cannot export local symbol '__asan" | show_build_progress
done
FUZZ_BIN="$(swift build -c release --scratch-path .build-fuzz --show-bin-path)"

failed=()
for target in "${TARGETS[@]}"; do
    work="$VAR_DIR/fuzz/$target"
    rm -rf "$work" && mkdir -p "$work/corpus"
    cp "$ROOT/Fuzz/Corpus/$target/"* "$work/corpus/"
    log "fuzzing $target for $SECONDS_EACH s"
    # SWIFT_BACKTRACE: a failed check traps; libFuzzer reports it, and Swift's own crash handler adds only noise.
    if ! SWIFT_BACKTRACE=enable=no "$FUZZ_BIN/fuzz-$target" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$work/" "$work/corpus" > "$work/fuzz.log" 2>&1; then
        tail -40 "$work/fuzz.log" >&2
        failed+=("$target: $(ls "$work"/crash-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | head -1)")
    else
        grep -E "^Done [0-9]+ runs" "$work/fuzz.log" | sed "s/^/  $target: /" >&2 || true
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    printf 'fuzzing found a failure: %s\n' "${failed[@]}" >&2
    exit 1
fi
log "fuzzing found nothing in ${#TARGETS[@]} targets"
