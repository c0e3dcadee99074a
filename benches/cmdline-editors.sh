#!/usr/bin/env bash
# Benchmark: exliar's kernel-command-line editors on a huge command line:
# GRUB_CMDLINE_LINUX_DEFAULT and GRUB_CMDLINE_LINUX in /etc/default/grub,
# /etc/kernel/cmdline, a boot loader entry's `options`, refind_linux.conf,
# limine.conf's `cmdline:` and /etc/default/limine's KERNEL_CMDLINE. Each
# gets exliar's usual parameters added and then removed again (the
# rollback), on a line of `quiet quiet …` and of `foo0=0 foo1=1 …`.
#
#   benches/cmdline-editors.sh [SMALL LARGE]   (bytes; default 1000000 10000000)
#
# Calls the editors directly (examples/cmdline-edit.rs): `exliar plan`
# refuses configuration files over 4 MiB. Prints the seconds per editor at
# both sizes and, last, the growth of the total time: linear work grows
# like the size (~10x). Not a test: numbers vary by machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
small=${1:-1000000}; large=${2:-10000000}
cargo build --release --manifest-path "$here/Cargo.toml" --quiet --example cmdline-edit
bin="$here/target/release/examples/cmdline-edit"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

for kind in quiet distinct; do
  "$bin" "$small" "$kind" >"$work/$kind-small"
  "$bin" "$large" "$kind" >"$work/$kind-large"
done
python3 - "$work" "$small" "$large" <<'PY'
import sys
work, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(path):
    rows = []
    for line in open(path):
        name, secs = line.rstrip("\n").rsplit(None, 1)
        rows.append((name.strip(), float(secs)))
    return rows
growth = []
for kind in ("quiet", "distinct"):
    a, b = read(f"{work}/{kind}-small"), read(f"{work}/{kind}-large")
    print(f"{kind} tokens: {'editor':<28} {small/1e6:>6g} MB (s) {large/1e6:>6g} MB (s)")
    for (name, ta), (_, tb) in zip(a, b):
        print(f"  {'':<14}{name:<28} {ta:12.3f} {tb:12.3f}")
    growth.append((kind, a[-1][1], b[-1][1]))
print("growth: %gx bytes -> %s" % (large / small, ", ".join(
    "%.1fx time (%s)" % (tb / max(ta, 1e-3), kind) for kind, ta, tb in growth)))
PY
