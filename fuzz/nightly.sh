#!/usr/bin/env bash
# Nightly-style fuzzing of every target in fuzz/ (not part of .ci/run).
#
#   fuzz/nightly.sh [FILTER...]
#
# Builds the targets as libFuzzer binaries with the nightly toolchain (the
# flags cargo-fuzz uses: sancov instrumentation, AddressSanitizer, debug
# assertions; cargo-fuzz itself is not needed), seeds each target's corpus
# from real configuration files (copied into a temporary folder, never into
# the repository), runs each target for ${FUZZ_SECONDS:-600} seconds and
# prints one line per target. A FILTER keeps the targets whose name contains
# it. Exit status: 0 when no target crashed, 1 when one did (its reproducer
# is kept under fuzz/artifacts/TARGET/), 2 when the build failed.
#
# Environment: FUZZ_SECONDS (per target, default 600), FUZZ_SEEDS (seed
# folders, space-separated; default: ../shared/fixtures/configs,
# ../shared/fixtures/hw-dumps and tests/fixtures, those present),
# FUZZ_ARGS (more libFuzzer flags, e.g. -dict=FILE).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
seconds=${FUZZ_SECONDS:-600}
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')

# The targets: the [[bin]] names of fuzz/Cargo.toml.
mapfile -t all < <(awk '/^\[\[bin\]\]/{b=1; next} b && /^name *=/{gsub(/[" ]/, "", $0); sub(/^name=/, "", $0); print; b=0}' "$here/Cargo.toml")
targets=()
for t in "${all[@]}"; do
    if [ $# -eq 0 ]; then
        targets+=("$t")
        continue
    fi
    for f in "$@"; do
        case "$t" in *"$f"*) targets+=("$t"); break ;; esac
    done
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz/nightly.sh: no target matches: $*" >&2
    echo "fuzz/nightly.sh: targets: ${all[*]}" >&2
    exit 2
fi

# cargo-fuzz's flags; --target keeps them off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "fuzz/nightly.sh: building ${#targets[@]} target(s) for $triple" >&2
if ! cargo +nightly build --quiet --release --manifest-path "$here/Cargo.toml" \
    --target "$triple" "${bins[@]}"; then
    echo "fuzz/nightly.sh: build failed" >&2
    exit 2
fi
bindir="$here/target/$triple/release"

# Seeds: every regular file under 64 KiB of the seed folders, named by content.
if [ -n "${FUZZ_SEEDS:-}" ]; then
    read -r -a seed_dirs <<<"$FUZZ_SEEDS"
else
    seed_dirs=("$repo/../shared/fixtures/configs" "$repo/../shared/fixtures/hw-dumps" "$repo/tests/fixtures")
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/exliar-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/seeds"
nseeds=0
for d in "${seed_dirs[@]}"; do
    [ -d "$d" ] || { echo "fuzz/nightly.sh: no seed folder $d (skipped)" >&2; continue; }
    while IFS= read -r -d '' f; do
        sum=$(sha1sum "$f" | cut -c1-40)
        cp "$f" "$work/seeds/$sum"
    done < <(find "$d" -type f -size -64k -not -path '*/sys/*' -print0)
done
nseeds=$(find "$work/seeds" -type f | wc -l)
echo "fuzz/nightly.sh: $nseeds distinct seed files; ${seconds}s per target" >&2

crashed=0
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$here/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    cp "$work/seeds/." "$corpus/" -r
    # Crashes are libFuzzer's crash-, leak-, timeout- and oom- reproducers;
    # slow-unit- files (an input slower than 10 s; a hang is a timeout after 60 s) are reported, not failed.
    count() { find "$artifacts" -type f -name "$1" | wc -l; }
    before=$(($(count 'crash-*') + $(count 'leak-*') + $(count 'timeout-*') + $(count 'oom-*')))
    slow_before=$(count 'slow-unit-*')
    log="$work/$t.log"
    set +e
    "$bindir/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 \
        -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {print s + 0}')
    after=$(($(count 'crash-*') + $(count 'leak-*') + $(count 'timeout-*') + $(count 'oom-*')))
    new=$((after - before))
    slow=$(($(count 'slow-unit-*') - slow_before))
    note=""
    [ "$slow" -gt 0 ] && note=" ($slow slow input(s) kept in $artifacts)"
    if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
        crashed=1
        printf '%-18s runs %-10s crashes %d/%s  FAILED (exit %d; artifacts in %s)\n' \
            "$t" "$runs" "$((new > 0 ? new : 1))" "$runs" "$rc" "$artifacts"
        if grep -q 'ERROR: \|panicked at' "$log"; then
            grep -m1 -A15 'ERROR: \|panicked at' "$log" | sed 's/^/    /'
        else
            tail -n 15 "$log" | sed 's/^/    /'
        fi
    else
        printf '%-18s runs %-10s crashes 0/%s  ok%s\n' "$t" "$runs" "$runs" "$note"
    fi
    rmdir "$artifacts" 2>/dev/null || true
done
exit "$crashed"
