#!/usr/bin/env bash
# Coverage-guided fuzzing of every file format kiln reads (libFuzzer on the
# stable toolchain; scripts/setup-fuzz.sh installs what it needs). Targets are
# fuzz/fuzz_targets/*.rs, each calling one harness of `kiln::fuzz` (src/fuzz.rs).
#
#   scripts/fuzz.sh build                   build every target, instrumented
#   scripts/fuzz.sh run TARGET SECONDS [ARG...]
#                                           fuzz one target (extra libFuzzer args)
#   scripts/fuzz.sh smoke RUNS              fuzz every target for RUNS inputs each,
#                                           from a fixed seed (KILN_FUZZ_SEED, 1):
#                                           the same code gives the same inputs,
#                                           so a smoke that passes here passes in CI
#   scripts/fuzz.sh targets                 list the targets
#
# A run starts from the committed seeds (fuzz/corpus/TARGET) and regressions
# (fuzz/regressions/TARGET); new inputs go to fuzz/corpus-work/TARGET (ignored),
# crashes to fuzz/artifacts/TARGET/. Copy each crash into fuzz/regressions/TARGET/
# once fixed: tests/fuzz_regressions.rs replays them. Exits non-zero on a crash,
# a hang (-timeout), or an allocation over the limits below. KILN_FUZZ_PREBUILT=1
# skips the build (fuzz the binaries already in fuzz/target); KILN_FUZZ_BIN_DIR
# fuzzes binaries copied elsewhere (long runs go on while the crate is rebuilt).
set -euo pipefail
repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="${KILN_FUZZ_BIN_DIR:-fuzz/target/$triple/release}"
# Seconds one input may take before it counts as a hang.
timeout_s=10
# Memory limits of the fuzzing process (MB): resident set, and any one allocation.
rss_limit_mb=2048
malloc_limit_mb=1024

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^kiln-fuzz$'; }

build() {
    [[ -n "${KILN_FUZZ_PREBUILT:-}${KILN_FUZZ_BIN_DIR:-}" ]] && return
    bash scripts/setup-fuzz.sh >/dev/null
    # Sanitizer coverage as cargo-fuzz sets it up, with stable flags only; the
    # explicit --target keeps the flags off build scripts.
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
        cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$triple"
}

run() {
    local target="$1" seconds="$2"
    shift 2
    local work="fuzz/corpus-work/$target"
    mkdir -p "$work" "fuzz/artifacts/$target" "fuzz/corpus/$target" "fuzz/regressions/$target"
    # Scratch files (each input written where a user's file would be) in memory.
    local tmp="${TMPDIR:-/tmp}"
    [[ -w /dev/shm ]] && tmp=/dev/shm
    TMPDIR="$tmp" "$bin_dir/$target" "$work" "fuzz/corpus/$target" "fuzz/regressions/$target" \
        -max_total_time="$seconds" -timeout="$timeout_s" \
        -rss_limit_mb="$rss_limit_mb" -malloc_limit_mb="$malloc_limit_mb" \
        -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 "$@"
}

case "${1:-}" in
build) build ;;
run)
    [[ $# -ge 3 ]] || { echo "usage: $0 run TARGET SECONDS [ARG...]" >&2; exit 2; }
    build
    run "${@:2}"
    ;;
smoke)
    [[ $# -eq 2 ]] || { echo "usage: $0 smoke RUNS" >&2; exit 2; }
    build
    mkdir -p fuzz/logs
    for t in $(targets); do
        echo "fuzz: $t for $2 inputs (seed ${KILN_FUZZ_SEED:-1})"
        # A time bound only as a safety net: the run count decides the inputs.
        if ! run "$t" 600 -runs="$2" -seed="${KILN_FUZZ_SEED:-1}" >"fuzz/logs/$t.log" 2>&1; then
            tail -40 "fuzz/logs/$t.log" >&2
            echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/" >&2
            exit 1
        fi
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "fuzz/logs/$t.log" || true
    done
    ;;
targets) targets ;;
*)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
