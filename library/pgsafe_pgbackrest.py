#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_pgbackrest: physical backups with WAL archiving, verified, restore-tested, recorded."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_pgbackrest
short_description: Take, verify and restore-test a pgBackRest backup and record it with its PITR target
description:
  - With I(action=backup) - writes the stanza's C(pgbackrest.conf) (one local repository under I(base_dir)), checks
    that the server archives its WAL to the stanza (sets C(archive_command) with ALTER SYSTEM when
    I(set_archive_command); C(archive_mode) and C(wal_level) need a restart and are only named), creates the stanza,
    takes a full or incremental backup, records the PITR target (the WAL position after the backup, archived),
    runs C(pgbackrest verify) on the repository and restores the backup into a scratch cluster (I(restore_test_path),
    started on I(restore_test_port), every table read in full), then records it in C(pgsafe.backup) like a logical
    backup (C(details.engine) is C(pgbackrest)).
  - A damaged repository fails the task naming the repository, the damaged files and the fix; the backup is then
    recorded as not verified, so the guard refuses it.
  - With I(action=restore) - restores the backup I(backup_id) (default the newest recorded one) of this database to
    its recorded PITR target (or I(target_lsn)) into I(data_dir), a local cluster that must not be running, and
    starts it on I(target_port), promoted (docs/pitr.md). Archiving is off in the copy.
  - With I(action=stop) - stops the local cluster in I(data_dir) (a recovered one, once it is no longer needed).
  - Self-hosted servers only - pgBackRest reads the data directory; hosted databases keep the pg_dump engine.
version_added: "0.2.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Reports the backup type it would take (or the restore it would run); writes and runs nothing.
  diff_mode:
    support: partial
    description: With I(action=backup), the pgbackrest.conf before and after.
options:
  action:
    description: Take a backup, or restore one to its PITR target into a local cluster.
    type: str
    choices: [backup, restore, stop]
    default: backup
  stanza:
    description: The pgBackRest stanza (one per target server).
    type: str
    required: true
  base_dir:
    description: Directory holding C(<stanza>/pgbackrest.conf), the repository, logs, locks and spool.
    type: path
    required: true
  run_as:
    description: OS user that runs pgbackrest and pg_ctl (the server's; needed when the controller runs as root).
    type: str
  pg_path:
    description: The server's data directory (default, its C(data_directory) setting).
    type: path
  socket_path:
    description: Unix socket directory pgbackrest connects through (default, the server's first one).
    type: path
  backup_type:
    description: C(auto) takes a full backup when none is younger than I(full_max_age_days), else an incremental one.
    type: str
    choices: [auto, full, incr, diff]
    default: auto
  full_max_age_days:
    description: Age after which C(auto) takes a new full backup.
    type: float
    default: 7
  process_max:
    description: pgbackrest process-max (parallel compression and transfer).
    type: int
    default: 2
  set_archive_command:
    description: Set the stanza's archive_command with ALTER SYSTEM when it differs (needs a superuser login).
    type: bool
    default: true
  restore_test_path:
    description: Data directory of the scratch cluster receiving the restore test (kept for the next delta restore).
    type: path
  restore_test_port:
    description: Port the scratch cluster is started on during the restore test.
    type: int
  pg_bin_dir:
    description: Directory of pg_ctl (default auto).
    type: path
  reason:
    description: Why the backup is taken (recorded).
    type: str
    default: ""
  operator:
    description: Who takes it (recorded).
    type: str
    default: ""
  run_id:
    description: The run the backup is recorded with; with I(action=restore), restore the backup that run took.
    type: str
  backup_id:
    description: With I(action=restore), the recorded backup to restore (default the newest of the stanza).
    type: str
  target_lsn:
    description: With I(action=restore), the WAL position to recover to (default the backup's recorded PITR target).
    type: str
  data_dir:
    description: With I(action=restore), the local cluster's data directory (created, or delta-restored when it exists).
    type: path
  target_port:
    description: With I(action=restore), the port the restored cluster is started on.
    type: int
"""

EXAMPLES = r"""
- name: Take a verified, restore-tested pgBackRest backup of prod
  pgsafe_pgbackrest:
    stanza: prod
    base_dir: /var/lib/pgsafe/pgbackrest
    run_as: postgres
    restore_test_path: /var/lib/pgsafe/pgbackrest/restore-test/prod
    restore_test_port: 55439

- name: Point-in-time recovery to just before the run, into a local cluster
  pgsafe_pgbackrest:
    action: restore
    stanza: prod
    base_dir: /var/lib/pgsafe/pgbackrest
    run_as: postgres
    data_dir: /var/lib/pgsafe/pitr/prod
    target_port: 55438
"""

RETURN = r"""
backup_id:
  description: The recorded backup (C(pgbackrest-<stanza>-<label>)).
  returned: success
  type: str
label:
  description: pgBackRest's label of the backup.
  returned: success
  type: str
type:
  description: full, incr or diff.
  returned: success
  type: str
pitr_target:
  description: The WAL position (C(lsn), C(time), C(segment)) a point-in-time recovery to just before the run uses.
  returned: success
  type: dict
verify:
  description: C(ok), C(status), C(damaged) (file, problem), C(seconds) of pgbackrest verify.
  returned: with action=backup
  type: dict
restore_test:
  description: The restore test (path, port, seconds, tables, rows).
  returned: with action=backup and restore_test_path
  type: dict
config:
  description: The pgbackrest.conf path.
  returned: always
  type: str
seconds:
  description: Seconds of the backup (or of the restore).
  returned: success
  type: float
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import reported_failures
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_pgbackrest_run import restore_to_target, stop_cluster, take_physical_backup


def main():
    module = PgsafeModule(
        argument_spec=dict(
            action=dict(type="str", choices=["backup", "restore", "stop"], default="backup"),
            stanza=dict(type="str", required=True),
            base_dir=dict(type="path", required=True),
            run_as=dict(type="str"),
            pg_path=dict(type="path"),
            socket_path=dict(type="path"),
            backup_type=dict(type="str", choices=["auto", "full", "incr", "diff"], default="auto"),
            full_max_age_days=dict(type="float", default=7),
            process_max=dict(type="int", default=2),
            set_archive_command=dict(type="bool", default=True),
            restore_test_path=dict(type="path"),
            restore_test_port=dict(type="int"),
            pg_bin_dir=dict(type="path"),
            reason=dict(type="str", default=""),
            operator=dict(type="str", default=""),
            run_id=dict(type="str"),
            backup_id=dict(type="str"),
            target_lsn=dict(type="str"),
            data_dir=dict(type="path"),
            target_port=dict(type="int"),
        ),
        required_if=[("action", "restore", ("data_dir", "target_port")), ("action", "stop", ("data_dir",))],
        required_together=[("restore_test_path", "restore_test_port")],
        supports_check_mode=True,
    )
    action = module.params["action"]
    with reported_failures(module, "pgBackRest " + action):
        if action == "backup":
            result = take_physical_backup(module)
        elif action == "restore":
            result = restore_to_target(module)
        else:
            result = stop_cluster(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
