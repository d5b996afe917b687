#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_pgbackrest_copy: the rehearsal's copy by delta restore of the source's pgBackRest backup."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_pgbackrest_copy
short_description: Replace the staging cluster by a delta restore of the source's pgBackRest backup, compared table by table
description:
  - The rehearsal's copy when the source's backup engine is pgBackRest (docs/pitr.md, Rehearsals). This task's
    connection is the copy (staging); I(source) is the source (prod), whose newest verified pgBackRest backup of
    I(stanza) is restored.
  - Takes a consistency point on the source - one short transaction locks every table IN SHARE MODE (writers
    wait at most a few milliseconds), exports its snapshot and writes a WAL record whose end LSN is the point;
    the row counts and content hashes of every table are read in that snapshot after the locks are released.
  - Then waits until the WAL through the point is archived (C(pgbackrest check)), stops the server in
    I(data_dir), delta-restores the backup into it to the point (C(--delta --type=lsn --target-exclusive
    --target-action=promote --archive-mode=off)), starts it on this connection's port and compares every table
    with the source at the point - the restore test's comparison, exact (the module_utils docstring says why).
  - The WHOLE cluster in I(data_dir) is replaced (every database and role of it) - a dedicated staging cluster. Refused,
    changing nothing, when I(data_dir) is not an absolute path, is the source's data directory, or is not the one
    the server on this connection's port runs from.
  - On equality records the comparison as the backup's restore test in the source's C(pgsafe.backup) and, with
    I(record_as_target_backup), the backup restored to the point as the copy's own backup in the copy's
    C(pgsafe.backup) (a restored copy). A difference fails the task naming the tables; nothing is recorded.
version_added: "0.3.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Checks the refusals and finds the backup; stops, restores and records nothing.
  diff_mode:
    support: none
    description: The whole cluster is replaced; the result names the backup, the point and the tables compared.
options:
  source:
    description:
      - The source database (prod), with the same option names as this module's connection; fill it with
        C(hostvars[<source>] | pgsafe_connection). Its login needs C(pg_logical_emit_message) and LOCK on every
        table (a superuser, or grants).
    type: dict
    required: true
  stanza:
    description: The source's pgBackRest stanza.
    type: str
    required: true
  base_dir:
    description: The source's pgBackRest directory (C(<stanza>/pgbackrest.conf), the repository).
    type: path
    required: true
  run_as:
    description: OS user that runs pgbackrest and pg_ctl for the staging cluster (owner of I(data_dir)).
    type: str
  data_dir:
    description: The staging cluster's data directory (replaced as a whole).
    type: path
    required: true
  pg_bin_dir:
    description: Directory of pg_ctl (default auto).
    type: path
  max_age_minutes:
    description: Oldest acceptable backup of the source.
    type: int
    default: 1440
  jobs:
    description: Connections reading the tables' content hashes on each side.
    type: int
    default: 2
  lock_timeout:
    description: Longest wait for each SHARE lock of the consistency point.
    type: str
    default: 5s
  lock_retries:
    description: Retries of the consistency point after a lock timeout (bounded, with backoff).
    type: int
    default: 3
  record_as_target_backup:
    description: Record the backup restored to the point as the copy's own pre-change backup.
    type: bool
    default: true
  run_id:
    description: The run recorded with the copy's backup.
    type: str
"""

EXAMPLES = r"""
- name: Copy prod into staging from its pgBackRest backup, compared table by table
  pgsafe_pgbackrest_copy:
    source: "{{ hostvars['prod'] | pgsafe_connection }}"
    stanza: prod
    base_dir: /var/lib/pgsafe/pgbackrest
    run_as: postgres
    data_dir: /var/lib/postgresql/15/staging
"""

RETURN = r"""
backup_id:
  description: The source's recorded backup that was restored.
  returned: success
  type: str
label:
  description: pgBackRest's label of it.
  returned: success
  type: str
point:
  description: The consistency point (C(lsn), C(time), C(segment), C(lock_seconds) the tables were locked, C(attempts)).
  returned: success, not in check mode
  type: dict
delta:
  description: True - the restore was a delta restore (C(--delta)).
  returned: success
  type: bool
tables:
  description: Tables compared (every table of the source), all equal.
  returned: success, not in check mode
  type: int
restore_seconds:
  description: Seconds of the delta restore.
  returned: success, not in check mode
  type: float
compare_seconds:
  description: Seconds of reading the copy's tables.
  returned: success, not in check mode
  type: float
recorded_as_target_backup:
  description: The backup restored to the point was recorded as the copy's own backup.
  returned: success
  type: bool
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import reported_failures
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_pgbackrest_copy import copy_from_backup


def main():
    module = PgsafeModule(
        argument_spec=dict(
            source=dict(second_connection_option(), required=True),
            stanza=dict(type="str", required=True),
            base_dir=dict(type="path", required=True),
            run_as=dict(type="str"),
            data_dir=dict(type="path", required=True),
            pg_bin_dir=dict(type="path"),
            max_age_minutes=dict(type="int", default=1440),
            jobs=dict(type="int", default=2),
            lock_timeout=dict(type="str", default="5s"),
            lock_retries=dict(type="int", default=3),
            record_as_target_backup=dict(type="bool", default=True),
            run_id=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    with reported_failures(module, "the rehearsal's copy from the pgBackRest backup"):
        result = copy_from_backup(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
