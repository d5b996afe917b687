#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_run_lock: one writing run at a time per database."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_run_lock
short_description: Hold a session-level advisory lock on the target database for a whole run
description:
  - I(state=acquired) starts a holder process that takes a session-level advisory lock on the target
    database and keeps its session open until the run releases it, until the controller
    (C(ansible-playbook), found above the module's process) is gone, or until I(max_hours). A crashed
    controller's lock goes with its holder's session.
  - When another run holds the lock the module fails naming it (run id, playbook, operator, since) and
    changes nothing.
  - I(state=released) stops the holder (I(holder_pid)).
  - Check mode takes no lock and reports who holds it, if anyone.
version_added: "0.2.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Takes no lock; reports the current holder.
  diff_mode:
    support: none
options:
  state:
    description: Take or let go of the run lock.
    type: str
    choices: [acquired, released]
    default: acquired
  run_id:
    description: The run that holds the lock (named to a run that is refused).
    type: str
  holder_pid:
    description: Pid of the holder process to stop (I(state=released)).
    type: int
  max_hours:
    description: The holder lets go after this long even if the controller cannot be watched.
    type: float
    default: 12
"""

EXAMPLES = r"""
- name: One writing run at a time on this database
  pgsafe_run_lock:
    run_id: "{{ run_context_run_id }}"
  register: run_lock
"""

RETURN = r"""
holder_pid:
  description: Pid of the holder process (on the host that ran the module).
  returned: when the lock was taken
  type: int
backend_pid:
  description: Server pid of the holder's session.
  returned: when the lock was taken
  type: int
controller_pid:
  description: The ansible-playbook process whose end releases the lock (null when none was found).
  returned: when the lock was taken
  type: int
holder:
  description: Who holds the lock (check mode, or a refusal).
  returned: when someone else holds it, or in check mode
  type: dict
queries:
  description: The statements this module's own connections ran, in order (the holder process's are not listed).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_run_lock import current_holder, release, take


def main():
    module = PgsafeModule(
        argument_spec=dict(
            state=dict(type="str", choices=["acquired", "released"], default="acquired"),
            run_id=dict(type="str"),
            holder_pid=dict(type="int"),
            max_hours=dict(type="float", default=12),
        ),
        required_if=[("state", "acquired", ["run_id"]), ("state", "released", ["holder_pid"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "released":
        stopped = False if module.check_mode else release(p["holder_pid"])
        module.exit_json(changed=stopped, holder_pid=p["holder_pid"])
    if module.check_mode:
        module.exit_json(changed=False, holder=current_holder(module))
    module.exit_json(changed=False, **take(module, p["run_id"], p["max_hours"]))


if __name__ == "__main__":
    main()
