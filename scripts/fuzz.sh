#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through libfuzzer-sys) of what crius parses from untrusted or
# defensive-parsed sources: image references, hosts.toml, SPDY frames and header blocks, WebSocket
# frames, the HTTP/2 :authority rewriter, layer tars (nothing written outside the target, ever),
# CRI log records, CNI results and the monitor's protocols. The targets live in fuzz/ (its own
# workspace, its own target dir fuzz/target) and are built with the sanitizer-coverage flags
# cargo-fuzz passes, on stable Rust, without cargo-fuzz itself (`cargo fuzz run <target>` works too
# where it is installed). No AddressSanitizer: it needs nightly, and the code under test is safe
# Rust apart from syscalls.
#
# Each target starts from its committed seed corpus (fuzz/corpus/<target>, never written to: new
# inputs go to a scratch dir) and runs for CRIUS_FUZZ_SECS seconds (default 15; 10 targets, so
# 150 s in all). A crash, panic, leak past -rss_limit_mb or a per-input timeout fails the script;
# the input is kept in fuzz/artifacts/<target>/ and must become a regression test in the normal
# suite along with its fix.
#
# Usage: scripts/fuzz.sh [target...]        # all targets by default
#        CRIUS_FUZZ_SECS=60 scripts/fuzz.sh tar_unpack
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "${HOME:-/root}/.cargo/env" ] && . "${HOME:-/root}/.cargo/env"

ALL=(image_reference hosts_toml spdy_frames spdy_header_block ws_frames authority_rewrite
    tar_unpack cri_log cni_result monitor_control)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL[@]}")
secs="${CRIUS_FUZZ_SECS:-15}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

export CARGO_TARGET_DIR="$PWD/fuzz/target"
export CARGO_INCREMENTAL=0
# What cargo-fuzz passes (without -Zsanitizer): inline 8-bit counters and comparison tracing for
# libFuzzer; `--cfg fuzzing` for crates that adapt. --target keeps the flags off build scripts and
# proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
echo "fuzz.sh: building ${#targets[@]} target(s) into fuzz/target"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --manifest-path fuzz/Cargo.toml --locked --release --target "$triple" "${bins[@]}" 2>&1 \
    | tail -n 3

scratch="$(mktemp -d /tmp/crius-fuzz.XXXXXX)"
# tar_unpack mounts its sandbox in a private mount namespace; its empty mount point goes here.
trap 'rm -rf "$scratch"; rmdir /tmp/crius-fuzz-unpack 2>/dev/null || true' EXIT
failed=()
for t in "${targets[@]}"; do
    bin="fuzz/target/$triple/release/$t"
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="fuzz/artifacts/$t/")
    [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
    case "$t" in
        tar_unpack) args+=(-max_len=16384) ;;
        cri_log) args+=(-max_len=8192) ;;
    esac
    log="$scratch/$t.log"
    # New inputs go to the scratch dir (first); the committed corpus is only read.
    if "$bin" "${args[@]}" "$scratch/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written|artifact" "$log" | head -n 20 >&2 || true
    fi
    # A crash on a seed comes before any stats line: none of these may end the script.
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2 || true)"
    printf 'fuzz.sh: %-18s %s  %s execs in %ss, coverage %s edges, corpus %s + %s new\n' \
        "$t" "$status" "${execs:-?}" "$secs" "${cov:-?}" \
        "$(ls "fuzz/corpus/$t" | wc -l)" "$(ls "$scratch/$t" | wc -l)"
done

if [ "${#failed[@]}" -gt 0 ]; then
    printf 'fuzz.sh: FAILED: %s (inputs in fuzz/artifacts/)\n' "${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), no crash"
