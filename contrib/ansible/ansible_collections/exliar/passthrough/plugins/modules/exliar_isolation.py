#!/usr/bin/python
# -*- coding: utf-8 -*-
# exliar.passthrough.exliar_isolation: boot-time GPU isolation through
# exliar (plan, apply as a journaled transaction, rollback).
# SPDX-License-Identifier: MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: exliar_isolation
short_description: Isolate a GPU for VM passthrough at boot with exliar
version_added: "0.1.0"
description:
  - Binds a GPU (all of its functions) to C(vfio-pci) from early boot, or
    undoes it, by running the C(exliar) program.
  - "C(state=present) runs C(exliar plan --json): an empty plan means the
    target is already configured (nothing changes); otherwise C(exliar apply
    --yes --json) applies it as one journaled transaction with backups
    (modprobe.d, the initramfs generator's configuration, the boot loader's
    kernel command line), then regenerates the initramfs and the boot
    loader's configuration unless C(no_run)."
  - "C(state=absent) rolls back, newest first, every applied exliar GPU
    isolation transaction that C(exliar history --json) lists for the
    target (only those of C(gpu) when it is given): every file comes back
    byte for byte."
  - exliar is run with an argument vector, never through a shell.
  - The change takes effect at the next boot; the module returns
    C(reboot_required).
author:
  - exliar contributors
options:
  state:
    description:
      - C(present) isolates the GPU, C(absent) rolls exliar's isolation back.
    type: str
    choices: [present, absent]
    default: present
  gpu:
    description:
      - PCI address of the GPU (C(0000:01:00.0), or C(01:00.0)).
      - With C(state=present), omitted means the GPU exliar recommends
        (C(exliar scan) says which).
      - With C(state=absent), omitted means every GPU isolation exliar
        applied to the target.
    type: str
  by_address:
    description:
      - Bind the card by PCI address at early boot, not by vendor:device id,
        even when no other device has its ids (C(exliar apply --by-address)).
      - exliar binds by address anyway when another device shares the
        card's ids.
    type: bool
    default: false
  target:
    description:
      - The root to configure (C(--target)), e.g. an installer's mounted
        root. Its transactions are kept under C(TARGET/var/lib/exliar).
    type: path
    default: /
  root:
    description:
      - The root to read the hardware from (C(--root)), e.g. a snapshot made
        by C(exliar snapshot).
    type: path
    default: /
  no_run:
    description:
      - Do not run the initramfs and boot loader regeneration commands
        (C(--no-run)); they are returned in C(commands) to run yourself.
      - Needed when C(target) is not a system that can run them.
    type: bool
    default: false
  force:
    description:
      - With C(state=present), go on despite refusals that exliar lets
        C(--force) override (the boot display of a single-GPU host, a shared
        IOMMU group, no IOMMU yet).
      - With C(state=absent), restore the originals even when someone
        changed a file exliar manages since (C(exliar rollback --force)).
    type: bool
    default: false
  bootloader:
    description:
      - Which boot loader's kernel command line to edit (C(--bootloader)),
        when exliar's evidence conflicts.
    type: str
    choices: [grub, systemd-boot, kernel-cmdline, grubby, kernelstub, refind, limine, limine-default, proxmox]
  iommu_pt:
    description:
      - Also add C(iommu=pt) to the kernel command line (C(--iommu-pt)).
    type: bool
    default: false
  exliar:
    description:
      - The exliar program, a path or a name looked up in C(PATH).
    type: str
    default: exliar
attributes:
  check_mode:
    support: full
    description: Plans (or lists the transactions to roll back) and reports what would change.
  diff_mode:
    support: full
    description: The unified diffs of exliar's plan, one per file.
notes:
  - exliar needs root to write a live system's configuration.
  - See C(docs/json.md) in exliar's sources for the documents returned.
seealso:
  - module: exliar.passthrough.exliar_facts
"""

EXAMPLES = r"""
- name: Isolate the GPU exliar recommends
  exliar.passthrough.exliar_isolation:
  register: isolation

- name: Reboot into the isolation
  ansible.builtin.reboot:
  when: isolation.reboot_required

- name: Isolate a given card, bound by address, in an installer's root
  exliar.passthrough.exliar_isolation:
    gpu: "0000:0b:00.0"
    by_address: true
    target: /mnt
    no_run: true

- name: Undo exliar's isolation
  exliar.passthrough.exliar_isolation:
    state: absent
"""

RETURN = r"""
gpu:
  description: The GPU isolated (full PCI address); with C(state=absent), C(gpu) or null.
  returned: always
  type: str
  sample: "0000:0b:00.0"
functions:
  description: The card's functions bound to vfio-pci with it.
  returned: when state is present
  type: list
  elements: str
  sample: ["0000:0b:00.0", "0000:0b:00.1"]
transaction:
  description: The id of the transaction applied (C(exliar history), C(exliar rollback ID)).
  returned: when state is present and something was applied
  type: str
  sample: "20261205T183825Z"
transactions:
  description: The ids of the transactions rolled back (in check mode, those that would be), newest first.
  returned: when state is absent
  type: list
  elements: str
  sample: ["20261205T183825Z"]
reboot_required:
  description: The change (in check mode, the change that would be made) takes effect at the next boot.
  returned: always
  type: bool
  sample: true
regeneration_pending:
  description:
    - The initramfs and boot loader regeneration commands were not run (C(no_run), or check mode);
      the boot does not see the change until they are.
  returned: always
  type: bool
commands:
  description: The regeneration commands, each an argument vector, in the order to run them.
  returned: always
  type: list
  elements: list
  sample: [["update-initramfs", "-u", "-k", "all"]]
plan:
  description: exliar's plan (the C(exliar.plan/1) document).
  returned: when state is present
  type: dict
journal:
  description: The transaction's journal (C(exliar.journal/1)).
  returned: when state is present and something was applied
  type: dict
journals:
  description: The journals of the transactions rolled back.
  returned: when state is absent and something was rolled back
  type: list
  elements: dict
unplaced_params:
  description: Kernel parameters a boot entry will still not pass (each with the entry and the reason); also warned.
  returned: when state is present
  type: list
  elements: dict
diff:
  description:
    - One entry per file, as Ansible shows them with C(--diff); C(prepared) is exliar's unified diff.
  returned: when something changes
  type: list
  elements: dict
  sample: [{"before_header": "etc/initramfs-tools/modules", "after_header": "etc/initramfs-tools/modules", "prepared": "--- ..."}]
exliar:
  description: exliar's JSON document when it refused or failed (C(error), C(reason), ...).
  returned: failure
  type: dict
"""

import json
import re

from ansible.module_utils.basic import AnsibleModule

SHORT_ADDR = re.compile(r"^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
# exliar's PCI address forms: DDDD:BB:DD.F (5 hex digits for Intel VMD domains) or BB:DD.F
ADDR = re.compile(r"^([0-9a-f]{4,5}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def full_address(addr):
    """`01:00.0` -> `0000:01:00.0`, lower case; other text as given."""
    if addr is None:
        return None
    addr = addr.strip().lower()
    if SHORT_ADDR.match(addr):
        return "0000:" + addr
    return addr


class Exliar(object):
    def __init__(self, module):
        self.module = module
        prog = module.params["exliar"]
        if "/" in prog:
            self.prog = prog
        else:
            self.prog = module.get_bin_path(prog, required=True)

    def run(self, args, ok_codes=(0,)):
        """Runs exliar with `args` (no shell); returns (rc, document or None, stdout, stderr)."""
        argv = [self.prog] + list(args)
        rc, out, err = self.module.run_command(argv, check_rc=False)
        doc = None
        if out.strip():
            try:
                doc = json.loads(out)
            except ValueError:
                doc = None
        if rc not in ok_codes or doc is None:
            self.fail(argv, rc, doc, out, err)
        return rc, doc, out, err

    def fail(self, argv, rc, doc, out, err, msg=None):
        if msg is None:
            msg = reason_of(doc, err) or "exliar exited with status %s" % rc
        self.module.fail_json(
            msg=msg,
            cmd=argv,
            rc=rc,
            stdout=out,
            stderr=err,
            exliar=doc,
            reason=(doc or {}).get("reason") if isinstance(doc, dict) else None,
        )


def reason_of(doc, err):
    """exliar's own words: the document's `error`, else its `exliar:` lines on stderr."""
    if isinstance(doc, dict) and doc.get("error"):
        return doc["error"]
    lines = [l[len("exliar: "):] if l.startswith("exliar: ") else l for l in (err or "").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:") or l.startswith("refused:")]
    picked = errors or lines
    return "\n".join(picked[-5:]) if picked else None


def plan_diff(plan):
    """Ansible's diff list from an exliar.plan/1 document: one entry per write-file step."""
    steps = [s for s in plan.get("steps", []) if s.get("kind") == "write-file"]
    diffs = plan.get("diffs", [])
    out = []
    for i, text in enumerate(diffs):
        path = steps[i]["path"] if i < len(steps) else "file %d" % (i + 1)
        out.append({"before_header": path, "after_header": path, "prepared": text})
    for s in plan.get("steps", []):
        if s.get("kind") == "kernel-params":
            out.append(
                {
                    "before_header": "kernel command line",
                    "after_header": "kernel command line",
                    "prepared": "kernel parameters to change yourself: add %s; remove %s\n"
                    % (" ".join(s.get("add", [])) or "-", " ".join(s.get("remove", [])) or "-"),
                }
            )
    return out


def plan_commands(plan):
    return [s["argv"] for s in plan.get("steps", []) if s.get("kind") == "run"]


def warn_plan(module, plan):
    for w in plan.get("warnings", []):
        module.warn("exliar: %s" % w)
    for u in plan.get("unplaced_params", []):
        module.warn(
            "exliar: %s will not pass %s: %s"
            % (u.get("entry"), " ".join(u.get("missing", [])), u.get("reason"))
        )


def present(module, ex):
    p = module.params
    args = ["--root", p["root"], "--target", p["target"]]
    if p["gpu"]:
        args += ["--gpu", p["gpu"]]
    if p["by_address"]:
        args.append("--by-address")
    if p["force"]:
        args.append("--force")
    if p["iommu_pt"]:
        args.append("--iommu-pt")
    if p["bootloader"]:
        args += ["--bootloader", p["bootloader"]]

    _, plan, _, _ = ex.run(["plan", "--json"] + args)
    if plan.get("error"):
        ex.fail(["plan"], 1, plan, "", "")
    result = dict(
        changed=False,
        gpu=plan.get("gpu"),
        functions=plan.get("functions", []),
        plan=plan,
        unplaced_params=plan.get("unplaced_params", []),
        reboot_required=False,
        regeneration_pending=False,
        commands=[],
    )
    if not plan.get("steps"):
        warn_plan(module, plan)
        module.exit_json(**result)

    if module.check_mode:
        warn_plan(module, plan)
        result.update(
            changed=True,
            reboot_required=True,
            regeneration_pending=True,
            commands=plan_commands(plan),
            diff=plan_diff(plan),
        )
        module.exit_json(**result)

    cmd = ["apply", "--yes", "--json"] + args
    if p["no_run"]:
        cmd.append("--no-run")
    _, doc, out, err = ex.run(cmd)
    applied_plan = doc.get("plan") or plan
    result.update(plan=applied_plan, gpu=applied_plan.get("gpu"), functions=applied_plan.get("functions", []))
    result["unplaced_params"] = doc.get("unplaced_params", applied_plan.get("unplaced_params", []))
    warn_plan(module, applied_plan)
    if doc.get("applied"):
        journal = doc.get("journal") or {}
        result.update(
            changed=True,
            transaction=journal.get("id"),
            journal=journal,
            reboot_required=True,
            regeneration_pending=bool(doc.get("no_run")),
            commands=[c.get("argv") for c in journal.get("commands", [])],
            diff=plan_diff(applied_plan),
        )
        module.exit_json(**result)
    if doc.get("reason") == "nothing-to-change":
        module.exit_json(**result)
    ex.fail([ex.prog] + cmd, 1, doc, out, err)


def absent(module, ex):
    p = module.params
    gpu = full_address(p["gpu"])
    if gpu is not None and not ADDR.match(gpu):
        module.fail_json(msg="`%s` is not a PCI address (expected DDDD:BB:DD.F or BB:DD.F)" % p["gpu"])
    _, hist, _, _ = ex.run(["history", "--json", "--target", p["target"]])
    isolations = [
        t
        for t in hist.get("transactions", [])
        # a journal without `subject` is a GPU isolation (apply, bind --persist)
        if not t.get("subject") and (gpu is None or t.get("gpu") == gpu)
    ]
    unfinished = [t["id"] for t in isolations if t.get("status") in ("applying", "rolling-back")]
    if unfinished:
        module.fail_json(
            msg="exliar transaction(s) %s did not finish: run `exliar recover --target %s` first"
            % (", ".join(unfinished), p["target"]),
            transactions=unfinished,
        )
    todo = [t for t in reversed(isolations) if t.get("status") == "applied"]
    result = dict(
        changed=bool(todo),
        gpu=gpu,
        transactions=[t["id"] for t in todo],
        reboot_required=bool(todo),
        regeneration_pending=bool(todo) and (module.check_mode or p["no_run"]),
        commands=[c.get("undo") or c.get("argv") for t in todo for c in t.get("commands", [])],
        diff=[rollback_diff(p["target"], t) for t in todo],
    )
    if not todo or module.check_mode:
        module.exit_json(**result)
    journals = []
    for t in todo:
        cmd = ["rollback", t["id"], "--target", p["target"], "--json"]
        if p["no_run"]:
            cmd.append("--no-run")
        if p["force"]:
            cmd.append("--force")
        _, j, _, _ = ex.run(cmd)
        journals.append(j)
    result["journals"] = journals
    module.exit_json(**result)


def rollback_diff(target, journal):
    """What a rollback does to each file of `journal`, for --diff: a file the
    transaction created is removed; one it changed gets its original back."""
    lines = []
    for f in journal.get("files", []):
        path = f.get("path")
        if f.get("existed"):
            lines.append(
                "~ /%s: restored to its original (sha256 %s)\n" % (path, f.get("before_sha256"))
            )
        else:
            lines.append("- /%s: removed (exliar created it)\n" % path)
        for d in reversed(f.get("created_dirs") or []):
            lines.append("- /%s/: removed when empty\n" % d)
    return {
        "before_header": "%s (transaction %s applied)" % (target, journal.get("id")),
        "after_header": "%s (rolled back)" % target,
        "prepared": "exliar rollback %s\n%s" % (journal.get("id"), "".join(lines)),
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            gpu=dict(type="str"),
            by_address=dict(type="bool", default=False),
            target=dict(type="path", default="/"),
            root=dict(type="path", default="/"),
            no_run=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            bootloader=dict(
                type="str",
                choices=[
                    "grub",
                    "systemd-boot",
                    "kernel-cmdline",
                    "grubby",
                    "kernelstub",
                    "refind",
                    "limine",
                    "limine-default",
                    "proxmox",
                ],
            ),
            iommu_pt=dict(type="bool", default=False),
            exliar=dict(type="str", default="exliar"),
        ),
        supports_check_mode=True,
    )
    ex = Exliar(module)
    if module.params["state"] == "present":
        present(module, ex)
    else:
        absent(module, ex)


if __name__ == "__main__":
    main()
