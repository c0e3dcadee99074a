#!/usr/bin/python
# -*- coding: utf-8 -*-
# exliar.passthrough.exliar_facts: exliar's scan and readiness check as facts.
# SPDX-License-Identifier: MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: exliar_facts
short_description: exliar's GPU inventory and passthrough readiness as facts
version_added: "0.1.0"
description:
  - Runs C(exliar scan --json) (the GPUs, their IOMMU groups and functions,
    quirks, which GPU to pass through) and C(exliar check --json) (the
    host's readiness for boot-time passthrough, each check with evidence and
    a remedy) and returns them as C(ansible_facts.exliar.scan) and
    C(ansible_facts.exliar.check).
  - Reads only; needs no root. A host that is not ready (C(exliar check)
    exits 1) is a fact, not a failure.
  - exliar is run with an argument vector, never through a shell.
author:
  - exliar contributors
options:
  root:
    description:
      - The root to read the host from (C(--root)), e.g. a snapshot made by
        C(exliar snapshot).
    type: path
    default: /
  exliar:
    description:
      - The exliar program, a path or a name looked up in C(PATH).
    type: str
    default: exliar
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so shows no diff.
  facts:
    support: full
notes:
  - The documents are C(exliar.inventory/1) and C(exliar.check/1), described
    in C(docs/json.md) of exliar's sources.
seealso:
  - module: exliar.passthrough.exliar_isolation
"""

EXAMPLES = r"""
- name: Read exliar's facts
  exliar.passthrough.exliar_facts:

- name: Show the GPU exliar recommends passing through
  ansible.builtin.debug:
    msg: "{{ ansible_facts.exliar.scan.recommendation.passthrough }}"

- name: Stop unless the host is ready
  ansible.builtin.assert:
    that: ansible_facts.exliar.check.ready
    fail_msg: "{{ ansible_facts.exliar.check.first_blocker.summary }}"
"""

RETURN = r"""
ansible_facts:
  description: exliar's facts.
  returned: always
  type: complex
  contains:
    exliar:
      description: exliar's documents.
      returned: always
      type: complex
      contains:
        scan:
          description: C(exliar scan --json) (C(exliar.inventory/1)) - C(gpus), C(recommendation), C(iommu_groups), C(devices), ...
          returned: always
          type: dict
        check:
          description: C(exliar check --json) (C(exliar.check/1)) - C(ready), C(first_blocker), C(checks), ...
          returned: always
          type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule


def run(module, prog, args, ok_codes):
    argv = [prog] + args
    rc, out, err = module.run_command(argv, check_rc=False)
    doc = None
    try:
        doc = json.loads(out)
    except ValueError:
        pass
    if rc not in ok_codes or not isinstance(doc, dict):
        lines = [l for l in (err or "").splitlines() if l.strip()]
        module.fail_json(
            msg="\n".join(lines[-5:]) or "exliar exited with status %s" % rc,
            cmd=argv,
            rc=rc,
            stdout=out,
            stderr=err,
        )
    return doc


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            exliar=dict(type="str", default="exliar"),
        ),
        supports_check_mode=True,
    )
    prog = module.params["exliar"]
    if "/" not in prog:
        prog = module.get_bin_path(prog, required=True)
    root = module.params["root"]
    scan = run(module, prog, ["scan", "--json", "--root", root], (0, 1))
    # exit 1: the host is not ready, which the document says
    check = run(module, prog, ["check", "--json", "--root", root], (0, 1))
    module.exit_json(changed=False, ansible_facts=dict(exliar=dict(scan=scan, check=check)))


if __name__ == "__main__":
    main()
