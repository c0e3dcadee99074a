#!/usr/bin/env bash
# Benchmark: `exliar scan --json --root T` against `lspci -nnk` and against
# a minimal reader of the same files as exliar (benches/minimal-reader.c,
# the physical limit), on the same synthetic host tree T.
#
#   benches/scan-vs-lspci.sh [--strace] [--exliar BIN] [--baseline BIN]
#                            [SIZES...]            (default sizes: 60 4096)
#
# --exliar: measure BIN instead of building target/release/exliar.
# --baseline: also run an earlier exliar build in the same rounds and
# print its median and its ratio to lspci (before/after comparisons).
# Each size: one warm-up round, then N rounds (31 at 60 functions, 15 at
# 4096) each running exliar, lspci and the minimal reader once, in turn,
# so that a load that comes and goes on the machine falls on all three
# alike; the medians of the wall times are compared. Peak RSS is exliar's
# largest of three runs under /usr/bin/time -f %M (GNU time forks, so the
# child's high-water mark is its own: wait4 after posix_spawn would count
# this script's python from before the exec).
# --strace: after the timings, `strace -c` summaries of exliar and lspci at
# the largest size side by side, and opens per PCI function.
#
# Needs: pciutils (lspci), python3, gcc; strace for --strace. Not a test:
# numbers vary by machine; ratios are what matter.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
do_strace=0; exliar=""; baseline=""; sizes=()
while [ $# -gt 0 ]; do
  case $1 in
    --strace) do_strace=1 ;;
    --exliar) exliar=$2; shift ;;
    --baseline) baseline=$2; shift ;;
    *) sizes+=("$1") ;;
  esac
  shift
done
[ ${#sizes[@]} -gt 0 ] || sizes=(60 4096)
command -v lspci >/dev/null || { echo "lspci not found: apt-get install pciutils" >&2; exit 2; }
if [ -z "$exliar" ]; then
  cargo build --release --manifest-path "$here/Cargo.toml" --quiet --bin exliar
  exliar="$here/target/release/exliar"
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/minimal-reader" "$here/benches/minimal-reader.c"
minimal="$work/minimal-reader"
ids=""; for p in /usr/share/misc/pci.ids /usr/share/hwdata/pci.ids; do [ -f "$p" ] && { ids=$p; break; }; done

for n in "${sizes[@]}"; do
  t="$work/t$n"; python3 "$here/benches/gen-tree.py" "$t" "$n" >/dev/null
  if [ -n "$ids" ]; then mkdir -p "$t/usr/share/misc"; cp "$ids" "$t/usr/share/misc/pci.ids"; fi
  # Sanity: all three see every function.
  ne=$("$exliar" scan --json --root "$t" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["devices"]))')
  nl=$(lspci -nnk -A linux-sysfs -O sysfs.path="$t/sys/bus/pci" 2>/dev/null | grep -c '^[0-9a-f]')
  nm=$("$minimal" "$t" | cut -d' ' -f1)
  [ "$ne" = "$nl" ] && [ "$ne" = "$nm" ] || { echo "function count differs: exliar $ne, lspci $nl, minimal $nm" >&2; exit 1; }
done

python3 - "$exliar" "$minimal" "$work" "$baseline" "${sizes[@]}" <<'PY'
import os, statistics, subprocess, sys, time
exliar, minimal, work, baseline = sys.argv[1:5]
sizes = [int(s) for s in sys.argv[5:]]
null = os.open(os.devnull, os.O_WRONLY)

def run(argv):
    """Wall seconds of one run, output discarded."""
    fa = [(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    _, status = os.waitpid(pid, 0)
    t = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed")
    return t

def peak_rss(argv):
    """Peak RSS in KiB (GNU time's %M), the largest of three runs."""
    if not os.path.exists("/usr/bin/time"):
        return "-"
    out = []
    for _ in range(3):
        r = subprocess.run(["/usr/bin/time", "-f", "%M"] + argv, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, check=True)
        out.append(int(r.stderr.strip().splitlines()[-1]))
    return max(out)

lspci = next(p for p in ("/usr/bin/lspci", "/usr/sbin/lspci", "/bin/lspci") if os.path.exists(p))
print("%-9s %6s %11s %10s %12s %13s %13s %13s" % ("functions", "runs", "exliar (ms)", "lspci (ms)",
      "minimal (ms)", "exliar RSS", "exliar/min", "exliar/lspci"))
for n in sizes:
    t = f"{work}/t{n}"
    cmds = {
        "exliar": [exliar, "scan", "--json", "--root", t],
        "lspci": [lspci, "-nnk", "-A", "linux-sysfs", "-O", f"sysfs.path={t}/sys/bus/pci"],
        "minimal": [minimal, t],
    }
    if baseline:
        cmds["baseline"] = [baseline, "scan", "--json", "--root", t]
    runs = 31 if n <= 1000 else 15
    for c in cmds.values():  # warm-up: caches, page cache, binaries
        run(c)
    times = {k: [] for k in cmds}
    for _ in range(runs):
        for k, c in cmds.items():
            times[k].append(run(c))
    rss = peak_rss(cmds["exliar"])
    med = {k: statistics.median(v) for k, v in times.items()}
    print("%-9d %6d %11.2f %10.2f %12.2f %9s KiB %13.2f %13.2f" % (
        n, runs, med["exliar"] * 1e3, med["lspci"] * 1e3, med["minimal"] * 1e3, rss,
        med["exliar"] / med["minimal"], med["exliar"] / med["lspci"]))
    if baseline:
        print("%-9s %6s %11.2f %10s %12s %13s %13.2f %13.2f   (baseline)" % (
            "", "", med["baseline"] * 1e3, "", "", "", med["baseline"] / med["minimal"],
            med["baseline"] / med["lspci"]))
PY

if [ $do_strace = 1 ]; then
  command -v strace >/dev/null || { echo "strace not found" >&2; exit 2; }
  n=${sizes[-1]}; t="$work/t$n"
  strace -f -c -o "$work/ex.strace" "$exliar" scan --json --root "$t" >/dev/null
  strace -f -c -o "$work/ls.strace" lspci -nnk -A linux-sysfs -O sysfs.path="$t/sys/bus/pci" >/dev/null 2>&1
  strace -f -c -o "$work/min.strace" "$minimal" "$t" >/dev/null
  for w in ex ls min; do
    awk 'NR>2 && $1 !~ /^-/ && $NF != "total" { e = (NF == 6) ? $5 : 0; printf "%-14s %8d %7d\n", $NF, $4, e }' "$work/$w.strace" | sort -k2,2nr | head -12 > "$work/$w.top"
  done
  echo
  echo "strace -c at $n functions (syscall, calls, errors): exliar | lspci | minimal"
  paste -d'|' <(awk '{printf "%-31s\n", $0}' "$work/ex.top") <(awk '{printf " %-31s\n", $0}' "$work/ls.top") <(sed 's/^/ /' "$work/min.top")
  # Opens from the summaries above (open, openat, openat2): a line-by-line
  # trace would count a call of exliar's second thread twice, as
  # "<unfinished ...>" and "<... resumed>".
  for w in ex ls min; do
    awk -v w="$w" -v n="$n" '$NF ~ /^open(at2?)?$/ { c += $4; e += (NF == 6) ? $5 : 0 }
      END { printf "%-8s opens per function: %.2f (%.2f succeeded)\n", w, c / n, (c - e) / n }' "$work/$w.strace"
  done
fi
