#!/usr/bin/env bash
# Benchmark: exliar's `bind` / `unbind` of a GPU + HDMI-audio pair and its
# dynamic handover (the libvirt hook's prepare / release), against the bare
# sysfs writes of the same operations (driver_override, unbind, drivers_probe,
# verify by the driver link), in one real-kernel guest (Debian's kernel, QEMU
# q35 under TCG, emulated IOMMU), same boot, interleaved.
#
#   benches/bind-realkernel.sh [--base EXLIAR] [--after-work] [CYCLES]   (default: 15)
#
# --base: another build of exliar (say, of the commit before a change), put in
# the guest as /bin/exliar-base and timed in the same cycles: a before/after in
# one boot, which separate runs cannot give (their ratios move by ±0.3).
# --after-work: also time a fixed piece of work settled and right after the bare
# writes: how much the kernel's asynchronous work after a rebind (which the bare
# writes do not wait for) slows whatever runs next, as exliar's last steps do.
#
# exliar's process start (`exliar --version`, timed in the same loop) is taken
# off exliar's times: under TCG one exec costs tens of milliseconds (about one
# on hardware), which would measure QEMU rather than exliar. The first bind,
# which loads vfio-pci, is reported apart. Times are medians of the guest's
# monotonic clock. The release build runs in the guest (EXLIAR_GUEST_BIN).
#
# This is the real-kernel tier's `bench_bind_handover` scenario: it needs what
# that tier needs (tests/realkernel/README.md). Not a test of time: the ratios
# are printed, never asserted; CI runs the scenario once as a smoke check.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
base=; after=
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=$(realpath "$2"); shift 2
      [ -x "$base" ] || { echo "--base $base: not an executable" >&2; exit 2; } ;;
    --after-work) after=1; shift ;;
    *) break ;;
  esac
done
cycles=${1:-15}
cargo build --release --manifest-path "$here/Cargo.toml" --quiet
log=$(mktemp); trap 'rm -f "$log"' EXIT
(cd "$here" && env EXLIAR_GUEST_BIN="$here/target/release/exliar" EXLIAR_BENCH_CYCLES="$cycles" \
  ${base:+EXLIAR_GUEST_BASE_BIN="$base"} ${after:+EXLIAR_BENCH_AFTER_WORK=1} \
  cargo test --quiet --test realkernel -- --exact bench_bind_handover --nocapture) >"$log" 2>&1 || {
  tail -40 "$log"; echo "the benchmark guest failed" >&2; exit 1; }
grep -h '^bench_bind_handover: ' "$log" | sed 's/^bench_bind_handover: //' | grep -v '^hook .* inside exliar\|^phases: ' || true
echo "exliar's own steps (its hook log):"
grep -h '^bench_bind_handover: hook .* inside exliar' "$log" | sed 's/^bench_bind_handover: /  /' || true
echo "exliar's phase times (-vv) of three binds and unbinds, with their outside times:"
grep -h '^bench_bind_handover: phases: ' "$log" | sed 's/^bench_bind_handover: phases: /  /' || true
echo "ratios (exliar less its process start / bare sysfs writes):"
grep -h '^bench_bind_handover: [^:]*: exliar .*ratio [0-9.]*$' "$log" | sed -E 's/^bench_bind_handover: ([^:]*):.*ratio ([0-9.]+)$/  \1: \2/'
grep -h '^bench_bind_handover: per-cycle ratios' "$log" | sed 's/^bench_bind_handover: /  /'
grep -h '^bench_bind_handover: work right after' "$log" | sed 's/^bench_bind_handover: /  /' || true
