#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# exliar-calamares.sh [ROOT]: isolate the passthrough GPU in a freshly
# installed system, from an installer (Calamares, or any script).
#
# ROOT is the installed system's mounted root: the first argument (the
# shellprocess module passes @@ROOT@@), else $ROOT. Hardware is read from
# the running (live) system, every file is written inside ROOT.
#
# Environment (all optional):
#   EXLIAR               the exliar binary (default: exliar, from PATH)
#   EXLIAR_REQUIRED=1    a failure fails the installation (default: it is
#                        logged and the installation goes on)
#   EXLIAR_GPU           the GPU to isolate (default: exliar's recommendation)
#   EXLIAR_BOOTLOADER    the boot loader to edit (read by exliar itself)
#   EXLIAR_FORCE=1       pass --force (overridable refusals)
#   EXLIAR_IOMMU_PT=1    pass --iommu-pt
#   EXLIAR_NO_RUN=1      write the files but do not run the regeneration
#                        commands (tests; or when a later installer step
#                        rebuilds the initramfs and boot-loader files anyway)
#   EXLIAR_CALAMARES_LOG the log file (default: ROOT/var/log/exliar-install.log)
#   EXLIAR_ROOT          where hardware is read (default: /), read by exliar
#
# Exit status: 0 done, nothing to do, or a failure that is not required;
# otherwise exliar's exit status (1 refused, 2 error) or 2 for bad usage.
#
# No value from the environment or from exliar's output is ever evaluated:
# every one is passed as a separate argument.

set -u

ROOT=${1:-${ROOT:-}}
EXLIAR=${EXLIAR:-exliar}
REQUIRED=${EXLIAR_REQUIRED:-0}

say() {
    printf 'exliar-calamares: %s\n' "$*" >&2
}

if [ -z "$ROOT" ] || [ ! -d "$ROOT" ]; then
    say "usage: exliar-calamares.sh ROOT (the installed system's mount point); got '${ROOT}'"
    exit 2
fi
case $ROOT in
    /*) ;;
    *) ROOT=$(cd -- "$ROOT" && pwd -P) || exit 2 ;;
esac

LOG=${EXLIAR_CALAMARES_LOG:-$ROOT/var/log/exliar-install.log}
if ! mkdir -p -- "$(dirname -- "$LOG")" 2>/dev/null || ! : >>"$LOG" 2>/dev/null; then
    LOG=/dev/null
fi

log() {
    say "$*"
    printf '%s\n' "$*" >>"$LOG"
}

# The flags shared by plan and apply, rebuilt as positional parameters (no
# eval, no word splitting of values).
set -- --target "$ROOT" --json
if [ -n "${EXLIAR_GPU:-}" ]; then
    set -- "$@" --gpu "$EXLIAR_GPU"
fi
if [ "${EXLIAR_FORCE:-0}" = 1 ]; then
    set -- "$@" --force
fi
if [ "${EXLIAR_IOMMU_PT:-0}" = 1 ]; then
    set -- "$@" --iommu-pt
fi

# Ends the script: a failure is fatal only when required.
finish() {
    rc=$1
    if [ "$rc" -eq 0 ]; then
        exit 0
    fi
    if [ "$REQUIRED" = 1 ]; then
        log "failed (exit status $rc); EXLIAR_REQUIRED=1: failing the installation"
        exit "$rc"
    fi
    log "failed (exit status $rc); the installation goes on without GPU isolation (set EXLIAR_REQUIRED=1 to make this fatal)"
    exit 0
}

if ! command -v "$EXLIAR" >/dev/null 2>&1; then
    log "exliar not found ($EXLIAR)"
    finish 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/exliar-calamares.XXXXXX") || finish 2
trap 'rm -rf -- "$TMP"' EXIT
trap 'exit 130' INT TERM

# 1. The plan: is there a GPU to isolate at all?
"$EXLIAR" plan "$@" >"$TMP/plan.json" 2>"$TMP/plan.err"
rc=$?
log "exliar plan (exit status $rc):"
cat -- "$TMP/plan.json" >>"$LOG"
cat -- "$TMP/plan.err" >&2
cat -- "$TMP/plan.err" >>"$LOG"
if grep -q '"no_gpu": true' "$TMP/plan.json"; then
    log "no GPU to isolate on this machine: nothing to do"
    exit 0
fi
if [ "$rc" -ne 0 ]; then
    finish "$rc"
fi

# 2. Apply it.
if [ "${EXLIAR_NO_RUN:-0}" = 1 ]; then
    set -- "$@" --no-run
fi
"$EXLIAR" apply --yes "$@" >"$TMP/apply.json" 2>"$TMP/apply.err"
rc=$?
log "exliar apply (exit status $rc):"
cat -- "$TMP/apply.json" >>"$LOG"
cat -- "$TMP/apply.json"
cat -- "$TMP/apply.err" >&2
cat -- "$TMP/apply.err" >>"$LOG"
if [ "$rc" -eq 0 ]; then
    log "done: the GPU is isolated from the next boot on; \`exliar rollback\` in the installed system undoes it"
fi
finish "$rc"
