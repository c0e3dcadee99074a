#!/bin/bash
# Extract Debian 13's dockerd 26.1.5 and containerd 1.7.24 under target/
# (a private apt state; nothing is installed, no daemon is started) and run
# the runtime tests that read exliar's edits with them.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/target/apt-trixie
mkdir -p "$B/lists/partial" "$B/cache/archives/partial" "$B/debs" "$B/x"
echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' >"$B/sources.list"
O=(-o "Dir::State::Lists=$B/lists" -o "Dir::Etc::SourceList=$B/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::Cache=$B/cache")
if [ ! -x "$B/x/usr/sbin/dockerd" ] || [ ! -x "$B/x/usr/bin/containerd" ]; then
  apt-get "${O[@]}" update -qq
  (cd "$B/debs" && apt-get "${O[@]}" download docker.io/trixie containerd/trixie)
  for d in "$B"/debs/docker.io_*.deb "$B"/debs/containerd_*.deb; do dpkg-deb -x "$d" "$B/x"; done
fi
EXLIAR_DOCKERD=$B/x/usr/sbin/dockerd EXLIAR_CONTAINERD=$B/x/usr/bin/containerd \
  cargo test --test runtime real_engines -- --nocapture
