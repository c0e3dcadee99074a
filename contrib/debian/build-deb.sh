#!/bin/bash
# Build exliar's Debian package from this checkout, offline, with dpkg-deb:
#   contrib/debian/build-deb.sh OUTDIR      (after cargo build --release)
# The binary is target/release/exliar (stripped here); man pages and
# completions come from `cargo run -p xtask -- dist`; the units from
# contrib/systemd. pci.ids comes from Debian's package, not a copy.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: build-deb.sh OUTDIR}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
bin=target/release/exliar
[ -x "$bin" ] || { echo "build-deb.sh: $bin missing: cargo build --release first" >&2; exit 2; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d" "$pkg/usr/lib/systemd/system" \
  "$pkg/usr/share/doc/exliar" "$pkg/usr/lib/exliar/plugins"
install -m 0755 "$bin" "$pkg/usr/bin/exliar"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/bin/exliar"
cargo run -q -p xtask -- dist "$stage/dist" 2>/dev/null
for m in "$stage"/dist/man/man1/*.1; do
  gzip -9n < "$m" > "$pkg/usr/share/man/man1/$(basename "$m").gz"
done
chmod 0644 "$pkg"/usr/share/man/man1/*
install -m 0644 "$stage/dist/completions/exliar.bash" "$pkg/usr/share/bash-completion/completions/exliar"
install -m 0644 "$stage/dist/completions/_exliar" "$pkg/usr/share/zsh/vendor-completions/_exliar"
install -m 0644 "$stage/dist/completions/exliar.fish" "$pkg/usr/share/fish/vendor_completions.d/exliar.fish"
install -m 0644 contrib/systemd/*.service "$pkg/usr/lib/systemd/system/"
# Debian's changelog and copyright.
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'exliar (%s-1) unstable; urgency=medium\n\n  * Package built from the exliar checkout.\n\n -- exliar developers <dev@exliar.invalid>  %s\n' \
  "$version" "$date" | gzip -9n > "$pkg/usr/share/doc/exliar/changelog.Debian.gz"
chmod 0644 "$pkg/usr/share/doc/exliar/changelog.Debian.gz"
cat > "$pkg/usr/share/doc/exliar/copyright" <<'COPY'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: exliar
Source: https://exliar.invalid/

Files: *
Copyright: 2026 exliar developers
License: MIT or Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 can be found
 in /usr/share/common-licenses/Apache-2.0. The MIT license:
 .
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the "Software"),
 to deal in the Software without restriction, including without limitation
 the rights to use, copy, modify, merge, publish, distribute, sublicense,
 and/or sell copies of the Software, and to permit persons to whom the
 Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
 FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 DEALINGS IN THE SOFTWARE.
COPY
chmod 0644 "$pkg/usr/share/doc/exliar/copyright"
# Maintainer scripts: enable exliar-recover at install, as debhelper's
# systemd snippets do.
cat > "$pkg/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ] || [ "$1" = abort-upgrade ]; then
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper unmask exliar-recover.service >/dev/null || true
    if deb-systemd-helper --quiet was-enabled exliar-recover.service; then
      deb-systemd-helper enable exliar-recover.service >/dev/null || true
    else
      deb-systemd-helper update-state exliar-recover.service >/dev/null || true
      deb-systemd-helper enable exliar-recover.service >/dev/null || true
    fi
  fi
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
  fi
fi
POST
cat > "$pkg/DEBIAN/postrm" <<'RM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper mask exliar-recover.service >/dev/null || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper purge exliar-recover.service >/dev/null || true
  deb-systemd-helper unmask exliar-recover.service >/dev/null || true
fi
RM
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/postrm"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CTRL
Package: exliar
Version: $version-1
Architecture: $arch
Maintainer: exliar developers <dev@exliar.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1 (>= 4.2), pci.ids | hwdata
Recommends: libvirt-clients, qemu-system-x86, ovmf
Suggests: prometheus
Section: admin
Priority: optional
Homepage: https://exliar.invalid/
Description: give a GPU to a VM or a container, safely
 exliar inspects a Linux host (PCI devices, GPUs, IOMMU groups), checks
 that it is ready for GPU passthrough, isolates a GPU at boot through the
 boot loader and initramfs it finds (a plan shown as a diff, applied as one
 journaled transaction, undone by rollback), binds cards at runtime, creates
 libvirt VMs with the GPU, and writes CDI specs for containers.
CTRL
(cd "$pkg" && find usr -type f | sort | xargs md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
mkdir -p "$out"
deb="$out/exliar_${version}-1_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
