# /scenario.sh of the realtools test `vm_in_l1` (sourced by the tier's guest script,
# PID 1 of the L1, no systemd): starts libvirt's daemons with their stock config and
# runs exliar's `vm` commands against them, creating, starting (paused), destroying
# and rolling back a nested VM that gets the GPU + audio pair by vfio-pci.
# Every step leaves $tag.{rc,stdout,stderr,secs} in /out for tests/realtools.rs.
GPU=${GPU:-0000:02:00.0}
AUDIO=${GPU%.0}.1

now() { cut -d' ' -f1 /proc/uptime; }
step() { # $1 = tag; the rest = command
  tag=$1; shift
  s=$(now)
  "$@" > "/out/$tag.stdout" 2> "/out/$tag.stderr"
  echo $? > "/out/$tag.rc"
  e=$(now)
  echo "$s $e" | awk '{printf "%.2f\n", $2 - $1}' > "/out/$tag.secs"
  say "step $tag: $* -> rc=$(cat "/out/$tag.rc") ($(cat "/out/$tag.secs")s)"
}
drivers() { # $1 = tag: `address driver` of both functions, then /dev/vfio
  for f in "$GPU" "$AUDIO"; do
    t=-; [ -e "/sys/bus/pci/devices/$f/driver" ] && t=$(readlink "/sys/bus/pci/devices/$f/driver") && t=${t##*/}
    echo "$f $t"
  done > "/out/$1.drivers"
  ls /dev/vfio > "/out/$1.vfio" 2>&1
}

l1_start=$(now)
mkdir -p /run /var/run /var/log/libvirt /var/lib/libvirt /tmp
grep -q ' /run tmpfs ' /proc/mounts || mount -t tmpfs tmpfs /run
grep -q ' /sys/fs/cgroup ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
grep -q ' /dev/pts ' /proc/mounts || { mkdir -p /dev/pts; mount -t devpts devpts /dev/pts; }
grep -q ' /dev/shm ' /proc/mounts || { mkdir -p /dev/shm; mount -t tmpfs tmpfs /dev/shm; }
mount -o remount,rw / 2>/dev/null
hostname l1 2>/dev/null
modprobe vfio-pci > /out/modprobe-vfio.txt 2>&1
modprobe tun 2>/dev/null
for f in "$GPU" "$AUDIO"; do
  g=$(readlink "/sys/bus/pci/devices/$f/iommu_group"); echo "$f ${g##*/}"
done > /out/groups.txt
drivers before

step virtlogd virtlogd --daemon
step libvirtd libvirtd --daemon
i=0
until virsh -c qemu:///system version > /out/virsh-version.txt 2>&1; do
  i=$((i + 1)); [ $i -gt 120 ] && break; sleep 0.5
done
say "libvirtd answers after $(now)s uptime ($i tries)"
virsh -c qemu:///system list --all --name > /out/list-before.txt 2>&1

if [ -n "$VIRSH_EQUIVALENT" ] && [ -f /l2.xml ]; then
  # harness check only (not committed flow): the same steps with virsh itself
  step create virsh -c qemu:///system define /l2.xml
  step show-before virsh -c qemu:///system dumpxml l2
  step start virsh -c qemu:///system start l2 --paused
else
  step create exliar vm create l2 --gpu "$GPU" --profile linux --memory 64M --cpus 1 \
    --firmware bios --virt-type qemu --disk none --network none --yes --json
  step show-before exliar vm show l2 --json
  step start exliar vm start l2 --paused
fi

# while paused: the nested QEMU's argv and its /dev/vfio descriptors
pid=$(pgrep -f qemu-system-x86_64 | head -n 1)
echo "${pid:--}" > /out/qemu.pid
if [ -n "$pid" ]; then
  tr '\0' '\n' < "/proc/$pid/cmdline" > /out/qemu.argv
  for fd in /proc/$pid/fd/*; do
    t=$(readlink "$fd" 2>/dev/null) || continue
    case $t in /dev/vfio/*) echo "$t" ;; esac
  done | sort -u > /out/qemu.vfio-fds
fi
drivers paused
[ -n "$VIRSH_EQUIVALENT" ] || step show-paused exliar vm show l2 --json

if [ -n "$VIRSH_EQUIVALENT" ] && [ -f /l2.xml ]; then
  step destroy virsh -c qemu:///system destroy l2
  drivers destroyed
  step rollback virsh -c qemu:///system undefine l2
else
  step destroy exliar vm destroy l2
  drivers destroyed
  step rollback exliar rollback last
fi
virsh -c qemu:///system list --all --name > /out/list-after.txt 2>&1
cp /var/log/libvirt/qemu/l2.log /out/l2-qemu.log 2>/dev/null

# --- the VM extras (issue 13), on the same L1 ---
x_start=$(now)
# USB: the L1's xHCI with a keyboard and a Wacom tablet (056a:0000); usbhid binds them
modprobe usbhid 2>/dev/null
i=0
until [ "$(ls /sys/bus/usb/devices | grep -c -- '-')" -ge 2 ]; do
  i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
done
ls -l /sys/bus/usb/devices/ > /out/usb-sysfs.txt 2>&1
step usb-list exliar usb list --json
step snapshot exliar snapshot /out/l1-snapshot.tar
# VBIOS: the emulated VGA's ROM through sysfs (QEMU's vgabios), then rom must be disabled
step vbios-dump exliar vbios dump "$GPU" -o /out/vga.rom
cat "/sys/bus/pci/devices/$GPU/rom" > /dev/null 2> /out/rom-after-dump.err
echo $? > /out/rom-after-dump.rc
step vbios-check exliar vbios check /out/vga.rom --for "$GPU" --json
# Looking Glass with kvmfr: every file it plans is back byte for byte after rollback
LG_FILES="/etc/modprobe.d/exliar-kvmfr.conf /etc/modules-load.d/exliar-kvmfr.conf \
  /etc/udev/rules.d/99-exliar-kvmfr.rules /etc/libvirt/qemu.conf \
  /etc/apparmor.d/local/abstractions/libvirt-qemu"
files_sha() { for f in $LG_FILES; do if [ -e "$f" ]; then sha256sum "$f"; else echo "absent $f"; fi; done; }
files_sha > /out/lg-files.before
step lg-create exliar vm create lg --gpu "$GPU" --profile linux --memory 64M --cpus 1 \
  --firmware bios --virt-type qemu --disk none --network none \
  --looking-glass=2560x1440 --kvmfr --looking-glass-user root --yes --json
files_sha > /out/lg-files.applied
cat /etc/modprobe.d/exliar-kvmfr.conf /etc/udev/rules.d/99-exliar-kvmfr.rules > /out/lg-kvmfr.txt 2>&1
virsh -c qemu:///system dumpxml lg > /out/lg.xml 2>&1
step lg-show exliar vm show lg --json
step lg-rollback exliar rollback last
files_sha > /out/lg-files.after
# USB hot-plug into a running (paused) nested VM
step hp-create exliar vm create l3 --gpu none --profile linux --memory 64M --cpus 1 \
  --firmware bios --virt-type qemu --disk none --network none --yes --json
step hp-start exliar vm start l3 --paused
step hp-attach exliar vm usb attach l3 056a:0000 --json
virsh -c qemu:///system dumpxml l3 > /out/hp-attached.xml 2>&1
step hp-detach exliar vm usb detach l3 056a:0000 --json
virsh -c qemu:///system dumpxml l3 > /out/hp-detached.xml 2>&1
step hp-destroy exliar vm destroy l3
step hp-rollback exliar rollback last
virsh -c qemu:///system list --all --name > /out/list-end.txt 2>&1
echo "$x_start $(now)" | awk '{printf "%.2f\n", $2 - $1}' > /out/extras.secs

# --- handover dynamic (issue 14): exliar's hook, installed as a transaction (SIGHUP to
# libvirtd through its pid file), binds the pair at `prepare begin` and gives it back at
# `release end`; libvirt leaves the binding alone (managed='no')
d_start=$(now)
step hooks-install exliar hooks install --yes --json
ls -l /etc/libvirt/hooks /etc/libvirt/hooks/qemu.d > /out/hooks-installed.txt 2>&1
drivers dyn-before
step dyn-create exliar vm create l4 --gpu "$GPU" --handover dynamic --profile linux \
  --memory 64M --cpus 1 --firmware bios --virt-type qemu --disk none --network none --yes --json
step dyn-show exliar vm show l4 --json
step dyn-start exliar vm start l4 --paused
drivers dyn-paused
step dyn-destroy exliar vm destroy l4
drivers dyn-destroyed
step hooks-status exliar hooks status --json
step dyn-show-after exliar vm show l4 --json
step dyn-delete exliar vm delete l4 --yes
echo "$d_start $(now)" | awk '{printf "%.2f\n", $2 - $1}' > /out/dynamic.secs
# --- handover single-gpu (issue 14): the same card, let go of entirely by the host at
# `prepare begin` (its framebuffer console, then the card, then bochs and snd_hda_intel
# unloaded, journaled), everything back at `release end`
s_start=$(now)
modules() { # $1 = tag: the card's driver modules loaded, and the vtconsoles
  for m in bochs snd_hda_intel; do [ -d "/sys/module/$m" ] && echo "$m"; done > "/out/$1.modules"
  for v in /sys/class/vtconsole/vtcon*; do echo "${v##*/} $(cat "$v/bind") $(cat "$v/name")"; done > "/out/$1.vtcon"
}
drivers sg-before; modules sg-before
step sg-create exliar vm create l5 --gpu "$GPU" --handover single-gpu --profile linux \
  --memory 64M --cpus 1 --firmware bios --virt-type qemu --disk none --network none --yes --json
step sg-start exliar vm start l5 --paused
drivers sg-paused; modules sg-paused
cp /var/lib/exliar/handover/single-gpu.json /out/sg-journal.json 2>/dev/null
step sg-destroy exliar vm destroy l5
drivers sg-destroyed; modules sg-destroyed
step sg-show exliar vm show l5 --json
step sg-delete exliar vm delete l5 --yes
echo "$s_start $(now)" | awk '{printf "%.2f\n", $2 - $1}' > /out/single-gpu.secs
step hooks-remove exliar hooks remove --yes
ls -A /etc/libvirt/hooks > /out/hooks-after.txt 2>&1
virsh -c qemu:///system list --all --name > /out/list-dyn.txt 2>&1
echo "$l1_start $(now)" | awk '{printf "%.2f\n", $2 - $1}' > /out/scenario.secs
say "vm_in_l1 scenario done in $(cat /out/scenario.secs)s"
