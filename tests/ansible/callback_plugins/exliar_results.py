# A notification callback for tests/ansible.rs: writes every task result and
# the play's stats as one JSON document to $EXLIAR_ANSIBLE_RESULTS when the
# playbook ends, beside the default (human) stdout callback. ansible-core
# ships no JSON stdout callback (it lives in the ansible.posix collection).
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: exliar_results
type: notification
short_description: task results as JSON, for exliar's tests
description:
  - Writes every task result and the stats to the file named by EXLIAR_ANSIBLE_RESULTS.
requirements:
  - enabled in callbacks_enabled
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "exliar_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.tasks = []

    def _record(self, status, result):
        self.tasks.append(
            {
                "task": result._task.get_name(),
                "host": result._host.get_name(),
                "status": status,
                "result": result._result,
            }
        )

    def v2_runner_on_ok(self, result):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record("failed", result)

    def v2_runner_on_skipped(self, result):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._record("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        doc = {
            "tasks": self.tasks,
            "stats": {h: stats.summarize(h) for h in hosts},
        }
        with open(os.environ["EXLIAR_ANSIBLE_RESULTS"], "w") as f:
            json.dump(doc, f, default=str)
