#!/bin/sh
# /init of the realkernel test guest (busybox sh). Built into the initramfs by
# tests/realkernel/initramfs.rs; driven by tests/realkernel.rs.
#
# 1. load a driver for every PCI device (modprobe $(cat modalias));
# 2. record the kernel's truth about PCI devices and IOMMU groups in /out/truth.txt,
#    using nothing but sysfs and the shell (independent of exliar);
# 3. run the exliar commands, each with its stdout, stderr and exit code kept in /out;
# 4. ship /out back to the host: a gzipped tar, base64, framed by marker lines,
#    written to the second serial port (/dev/ttyS1), which only this script uses;
# 5. power off.
#
# Progress goes to the console (ttyS0), which the host keeps as serial.log.

#
# The same script is `init=/exliar-check.sh` of an installed Debian root that the
# real-tools tier boots from a disk (Scenario::with_disk): there the root's own tools
# stay (kmod's modprobe, which honours modprobe.d softdeps and install lines), and
# busybox only adds the applets the root lacks (poweroff): `--install` never
# replaces a file. In the tier's own initramfs it provides every command, among
# them /sbin/modprobe, which the kernel runs to load modules on demand (the HDA
# codec driver).

/bin/busybox mkdir -p /proc /sys /dev /tmp /out /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# an initramfs that switched to a disk root has moved these there already
[ -e /proc/uptime ] || mount -t proc proc /proc
[ -d /sys/bus ] || mount -t sysfs sysfs /sys
# (the tier's initramfs has /dev/console and /dev/null nodes of its own: look at
# the mounts, not for a node)
grep -q ' /dev devtmpfs ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
# keep kernel chatter off the console while we print our own progress
echo 4 > /proc/sys/kernel/printk

say() { echo "[realkernel-init] $*"; }
say "start, uptime $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r)"

# Drivers bound before this script ran: on a disk boot, what the initramfs did.
for d in /sys/bus/pci/devices/*; do
  [ -e "$d" ] || continue
  t=-; [ -e "$d/driver" ] && t=$(readlink "$d/driver") && t=${t##*/}
  echo "${d##*/} $t"
done > /out/drivers-at-init.txt

# --- 1. drivers -------------------------------------------------------------------------
: > /out/modprobe.txt
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/modalias" ] || continue
  [ -e "$d/driver" ] && continue
  alias=$(cat "$d/modalias")
  if err=$(modprobe "$alias" 2>&1); then
    echo "ok ${d##*/} $alias" >> /out/modprobe.txt
  else
    echo "fail ${d##*/} $alias $err" | tr '\n' ' ' >> /out/modprobe.txt
    echo >> /out/modprobe.txt
  fi
done
# let asynchronous probes (HDA codecs, DRM) settle
sleep 1
say "drivers loaded, uptime $(cut -d' ' -f1 /proc/uptime)s"

# --- 2. the kernel's truth --------------------------------------------------------------
link_base() { # $1 = symlink; prints the basename of its target, or '-'
  if [ -e "$1" ]; then t=$(readlink "$1"); echo "${t##*/}"; else echo -; fi
}
strip0x() { v=$(cat "$1"); echo "${v#0x}"; }
{
  echo "# realkernel truth v1"
  echo "kernel $(uname -r)"
  echo "cmdline $(cat /proc/cmdline)"
  for d in /sys/bus/pci/devices/*; do
    [ -e "$d" ] || continue
    bv=-; [ -e "$d/boot_vga" ] && bv=$(cat "$d/boot_vga")
    rom=0; [ -e "$d/rom" ] && rom=1
    echo "dev ${d##*/} class=$(cat "$d/class") vendor=$(strip0x "$d/vendor")" \
      "device=$(strip0x "$d/device") subvendor=$(strip0x "$d/subsystem_vendor")" \
      "subdevice=$(strip0x "$d/subsystem_device") driver=$(link_base "$d/driver")" \
      "group=$(link_base "$d/iommu_group") boot_vga=$bv rom=$rom modalias=$(cat "$d/modalias")"
  done
  echo "iommu_units $(ls /sys/class/iommu 2>/dev/null | tr '\n' ' ')"
  if [ -d /sys/kernel/iommu_groups ]; then
    for g in /sys/kernel/iommu_groups/*; do
      [ -d "$g/devices" ] || continue
      ty=-; [ -e "$g/type" ] && ty=$(cat "$g/type")
      echo "group ${g##*/} type=$ty members=$(ls "$g/devices" | tr '\n' ' ')"
    done
  fi
} > /out/truth.txt
dmesg > /out/dmesg.txt
cut -d' ' -f1 /proc/modules | sort > /out/modules.txt
say "truth recorded: $(grep -c '^dev ' /out/truth.txt) PCI functions, $(grep -c '^group ' /out/truth.txt) IOMMU groups"

# --- 3. exliar --------------------------------------------------------------------------
run_exliar() { # $1 = tag for the output files; the rest = exliar arguments
  tag=$1; shift
  s=$(cut -d' ' -f1 /proc/uptime)
  /bin/exliar "$@" > "/out/$tag.stdout" 2> "/out/$tag.stderr"
  echo $? > "/out/$tag.rc"
  say "exliar $* -> rc=$(cat "/out/$tag.rc") ($s..$(cut -d' ' -f1 /proc/uptime)s)"
}
run_exliar scan scan --json
cp /out/scan.stdout /out/scan.json
run_exliar iommu iommu --json
cp /out/iommu.stdout /out/iommu.json
run_exliar snapshot snapshot /out/snap.tar
run_exliar check check --json

# scenario-specific steps (Scenario::with_guest_script), in a subshell so `exit` is harmless
if [ -f /scenario.sh ]; then
  say "running /scenario.sh"
  ( . /scenario.sh ) > /out/scenario.stdout 2> /out/scenario.stderr
  echo $? > /out/scenario.rc
  say "/scenario.sh -> rc=$(cat /out/scenario.rc)"
fi

# --- 4. ship /out -----------------------------------------------------------------------
say "packing /out"
tar -czf /tmp/out.tgz -C /out . 2> /tmp/tar.err || { say "tar failed: $(cat /tmp/tar.err)"; }
size=$(wc -c < /tmp/out.tgz)
sum=$(sha256sum /tmp/out.tgz | cut -d' ' -f1)
stty -F /dev/ttyS1 raw -echo 2>/dev/null
{
  echo "EXLIAR-XFER-BEGIN $size $sum"
  base64 /tmp/out.tgz
  echo "EXLIAR-XFER-END"
} > /dev/ttyS1
# closing a serial tty waits until its output has drained, so the data is out now
say "shipped $size bytes, uptime $(cut -d' ' -f1 /proc/uptime)s"
say "EXLIAR-GUEST-DONE"
sync
poweroff -f
