#!/usr/bin/env bash
# Benchmark: `exliar scan --json --root T` against `lspci -nnk` on the same
# synthetic host tree T, at 60 and 4096 PCI functions.
#
#   benches/scan-vs-lspci.sh [SIZES...]      (default: 60 4096)
#
# Needs: pciutils (lspci), python3, GNU time (/usr/bin/time), hyperfine if
# present (otherwise a plain loop). Reports wall-time ratios and exliar's
# peak memory. Not a test: numbers vary by machine; ratios are what matter.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(60 4096)
command -v lspci >/dev/null || { echo "lspci not found: apt-get install pciutils" >&2; exit 2; }
cargo build --release --manifest-path "$here/Cargo.toml" --quiet
exliar="$here/target/release/exliar"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ids=""; for p in /usr/share/misc/pci.ids /usr/share/hwdata/pci.ids; do [ -f "$p" ] && { ids=$p; break; }; done

time_cmd() { # prints mean seconds of N runs
  local runs=$1; shift
  if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/h.json" "$*" >/dev/null 2>&1
    python3 -c "import json;print(json.load(open('$work/h.json'))['results'][0]['mean'])"
  else
    local t0 t1; "$@" >/dev/null 2>&1; t0=$(date +%s.%N)
    for _ in $(seq "$runs"); do "$@" >/dev/null 2>&1; done
    t1=$(date +%s.%N); python3 -c "print(($t1-$t0)/$runs)"
  fi
}

printf '%-8s %12s %12s %8s %14s\n' functions "exliar (ms)" "lspci (ms)" ratio "exliar RSS"
declare -A ex
for n in "${sizes[@]}"; do
  t="$work/t$n"; python3 "$here/benches/gen-tree.py" "$t" "$n" >/dev/null
  if [ -n "$ids" ]; then mkdir -p "$t/usr/share/misc"; cp "$ids" "$t/usr/share/misc/pci.ids"; fi
  # Sanity: both tools see every function.
  ne=$("$exliar" scan --json --root "$t" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["devices"]))')
  nl=$(lspci -nnk -A linux-sysfs -O sysfs.path="$t/sys/bus/pci" | grep -c '^[0-9a-f]')
  [ "$ne" = "$nl" ] || { echo "device count differs: exliar $ne, lspci $nl" >&2; exit 1; }
  runs=20; [ "$n" -gt 1000 ] && runs=10
  te=$(time_cmd $runs "$exliar" scan --json --root "$t")
  tl=$(time_cmd $runs lspci -nnk -A linux-sysfs -O sysfs.path="$t/sys/bus/pci")
  rss=$(/usr/bin/time -f %M "$exliar" scan --json --root "$t" 2>&1 >/dev/null | tail -1)
  ex[$n]=$te
  python3 -c "print('%-8s %12.2f %12.2f %8.2f %11s KiB' % ($n, $te*1000, $tl*1000, $te/$tl, '$rss'))"
done
if [ ${#sizes[@]} -ge 2 ]; then
  a=${sizes[0]}; b=${sizes[-1]}
  python3 -c "print('growth: %dx functions -> %.1fx exliar time (per-function %.1f us vs %.1f us)' % ($b/$a, ${ex[$b]}/${ex[$a]}, ${ex[$a]}/$a*1e6, ${ex[$b]}/$b*1e6))"
fi
