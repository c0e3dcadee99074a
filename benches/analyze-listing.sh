#!/usr/bin/env bash
# Benchmark: `exliar analyze --json` on generated listings of N GPU lines,
# each in its own IOMMU group, with distinct ids and with one shared
# vendor:device pair (the case whose twin lists used to grow with N²).
#
#   benches/analyze-listing.sh [SIZES...]      (default: 4096 16384 65536)
#
# Needs: python3, GNU time (/usr/bin/time). Prints wall time and peak memory
# per size and the growth from the first size to the last: linear work shows
# a growth close to the size ratio. Not a test: numbers vary by machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(4096 16384 65536)
cargo build --release --manifest-path "$here/Cargo.toml" --quiet
exliar="$here/target/release/exliar"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

gen() { # gen N identical(0/1) FILE
  python3 - "$1" "$2" "$3" <<'PY'
import sys
n, ident, path = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
with open(path, "w") as f:
    for i in range(n):
        dom, bus, dev, fn = i >> 16, (i >> 8) & 0xff, (i >> 3) & 0x1f, i & 7
        did = 0x2503 if ident else i & 0xffff
        f.write(f"IOMMU Group {i} {dom:04x}:{bus:02x}:{dev:02x}.{fn} VGA compatible controller [0300]: "
                f"NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:{did:04x}] (rev a1)\n")
PY
}

printf '%-8s %-10s %10s %12s\n' lines ids "time (s)" "peak RSS"
for kind in distinct identical; do
  first=""; last=""
  for n in "${sizes[@]}"; do
    f="$work/$kind-$n.txt"; gen "$n" "$([ $kind = identical ] && echo 1 || echo 0)" "$f"
    out=$(/usr/bin/time -f '%e %M' "$exliar" analyze --json "$f" 2>&1 >/dev/null | tail -1)
    read -r secs rss <<<"$out"
    printf '%-8s %-10s %10s %9s KiB\n' "$n" "$kind" "$secs" "$rss"
    [ -n "$first" ] || first="$n $secs"; last="$n $secs"
  done
  python3 -c "a,ta='$first'.split(); b,tb='$last'.split(); print('%s: %dx lines -> %.1fx time' % ('$kind', int(b)//int(a), float(tb)/max(float(ta),1e-3)))"
done
