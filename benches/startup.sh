#!/usr/bin/env bash
# Benchmark: start-up cost of the commands that run often or first:
# `exliar --version`, `exliar status` on an idle fixture host, and the
# libvirt hook (`exliar hook qemu DOMAIN prepare begin -`, run by libvirt
# for every domain) for a domain that is not exliar's. Each is compared
# with /bin/true run the same way.
#
#   benches/startup.sh [RUNS]      (default: 200)
#
# Needs: python3; valgrind (callgrind) for instruction counts, skipped
# without it. Prints, per command, the instructions executed (callgrind's
# "Collected"), the median wall time of RUNS runs, and last the ratio of
# each median to /bin/true's. Not a test: numbers vary by machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-200}
cargo build --release --manifest-path "$here/Cargo.toml" --quiet
exliar="$here/target/release/exliar"
host="$here/tests/fixtures/hosts/hw09-ryzen-x570-rtx3060"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# A domain libvirt would start that exliar did not create.
cat >"$work/foreign.xml" <<'XML'
<domain type='kvm'>
  <name>win10</name>
  <uuid>2f0c1a3e-5b7d-4c1e-9a4b-0d2e6f8a1b3c</uuid>
  <memory unit='KiB'>8388608</memory>
  <vcpu placement='static'>8</vcpu>
  <os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><source file='/var/lib/libvirt/images/win10.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>
  </devices>
</domain>
XML

python3 - "$runs" "$work" "$exliar" "$host" <<'PY'
import os, re, shutil, statistics, subprocess, sys, time

runs, work, exliar, host = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
xml = os.path.join(work, "foreign.xml")
cases = [
    ("/bin/true", ["/bin/true"], None),
    ("exliar --version", [exliar, "--version"], None),
    ("exliar status (fixture)", [exliar, "--root", host, "status"], None),
    ("hook, foreign domain", [exliar, "--root", host, "hook", "qemu", "win10", "prepare", "begin", "-"], xml),
]
valgrind = shutil.which("valgrind")

def run(argv, stdin):
    with open(stdin or os.devnull, "rb") as i:
        r = subprocess.run(argv, stdin=i, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)}: exit status {r.returncode}")

def instructions(argv, stdin):
    if not valgrind:
        return None
    out = os.path.join(work, "cg.out")
    with open(stdin or os.devnull, "rb") as i:
        r = subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"] + argv,
                           stdin=i, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    m = re.search(r"Collected : (\d+)", r.stderr)
    return int(m.group(1)) if m else None

for name, argv, stdin in cases:
    for _ in range(5):
        run(argv, stdin)  # warm the page cache
# Round robin, so that load from elsewhere hits every command alike.
times = {name: [] for name, _, _ in cases}
for _ in range(runs):
    for name, argv, stdin in cases:
        t0 = time.perf_counter()
        run(argv, stdin)
        times[name].append(time.perf_counter() - t0)
rows = [(name, instructions(argv, stdin), statistics.median(times[name]))
        for name, argv, stdin in cases]

print("%-26s %14s %12s" % ("command", "instructions", "median (ms)"))
for name, ins, med in rows:
    print("%-26s %14s %12.3f" % (name, f"{ins:,}" if ins else "-", med * 1e3))
base = rows[0][2]
print("ratio to /bin/true (median wall time): " +
      ", ".join("%s %.2fx" % (name, med / base) for name, _, med in rows[1:]))
PY
