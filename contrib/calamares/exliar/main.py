#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Calamares job: run exliar-calamares.sh on the installed system's root.

Settings come from exliar.conf (see there). The script is run with an
argument list, never through a shell; settings reach it as environment
variables, which it passes to exliar as separate arguments.
"""

import os
import subprocess

import libcalamares

HERE = os.path.dirname(os.path.abspath(__file__))


def pretty_name():
    return "Configuring GPU passthrough (exliar)"


def _flag(value):
    return "1" if value is True or str(value).lower() in ("1", "true", "yes") else "0"


def run():
    conf = libcalamares.job.configuration or {}
    root = libcalamares.globalstorage.value("rootMountPoint")
    required = _flag(conf.get("required", False)) == "1"
    if not root or not os.path.isdir(root):
        msg = "no target root (rootMountPoint) to configure"
        libcalamares.utils.warning("exliar: " + msg)
        return ("GPU passthrough", msg) if required else None

    env = dict(os.environ)
    env["EXLIAR_REQUIRED"] = "1" if required else "0"
    if conf.get("exliar"):
        env["EXLIAR"] = str(conf["exliar"])
    for key, var in (("gpu", "EXLIAR_GPU"), ("bootloader", "EXLIAR_BOOTLOADER")):
        value = conf.get(key)
        if value and str(value) != "auto":
            env[var] = str(value)
    for key, var in (
        ("force", "EXLIAR_FORCE"),
        ("iommuPt", "EXLIAR_IOMMU_PT"),
        ("noRun", "EXLIAR_NO_RUN"),
    ):
        env[var] = _flag(conf.get(key, False))

    script = conf.get("script") or os.path.join(HERE, "exliar-calamares.sh")
    timeout = int(conf.get("timeout", 600))
    try:
        proc = subprocess.run(
            ["/bin/sh", script, root],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        libcalamares.utils.warning("exliar: {}".format(e))
        return ("GPU passthrough", str(e)) if required else None
    out = proc.stdout.decode("utf-8", "replace")
    for line in out.splitlines():
        libcalamares.utils.debug("exliar: " + line)
    if proc.returncode != 0:
        # The script already decided: non-zero only when required.
        return (
            "GPU passthrough could not be configured",
            "exliar exited with status {}; see the installation log.".format(
                proc.returncode
            ),
        )
    return None
