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
echo "$l1_start $(now)" | awk '{printf "%.2f\n", $2 - $1}' > /out/scenario.secs
say "vm_in_l1 scenario done in $(cat /out/scenario.secs)s"
