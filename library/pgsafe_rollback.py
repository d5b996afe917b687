#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_rollback: undo a run, newest step first, from its journal."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_rollback
short_description: Undo a pgsafe run from its journal, newest step first
description:
  - Reads the run's completed steps from C(pgsafe.journal) and undoes them in reverse order
    (see module_utils/pgsafe_rollback.py) - removed schemas restored from the verified backup the
    removal took, retired tables moved back, a merge target the run created set aside in the
    quarantine schema, type changes reverted with the rollback SQL the change generated (which
    also puts quarantined rows back, hash-checked).
  - Each undone step is journaled as C(rollback:<journal id>), so a rollback interrupted half-way
    resumes where it stopped; the run is marked C(rolled_back) at the end.
  - Check mode returns the plan, read in a READ ONLY transaction, and changes nothing.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
options:
  run_id:
    description: Run to undo; default the newest run of I(playbooks) that changed something.
    type: str
  playbooks:
    description: Playbooks whose runs may be undone when I(run_id) is not given.
    type: list
    elements: str
    default: [sprint90_prod, sprint90_dev, sprint90_rehearsal, schema_fix, cleanup]
  rollback_run_id:
    description: Run id of this rollback (journaled with each undone step).
    type: str
    required: true
  pg_bin_dir:
    description: Directory of pg_restore/pg_dump/psql for schema restores.
    type: path
"""

EXAMPLES = r"""
- name: Undo the newest Sprint 90 run on this database
  pgsafe_rollback:
    rollback_run_id: "{{ run_context_run_id }}"
"""

RETURN = r"""
run_id:
  description: The run undone (null when there was nothing to undo).
  returned: always
  type: str
actions:
  description: The undo actions, newest step first, each with journal_id, step, object, action and outcome.
  returned: always
  type: list
  elements: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_identifiers import derived_name, split_qualified
from ansible.module_utils.pgsafe_meta import QUARANTINE_SCHEMA, journal, meta_schema_installed
from ansible.module_utils.pgsafe_rollback import (RollbackError, backup_locations, newest_undoable_run, plan_rollback,
                                                  read_journal)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    sql = None


def set_aside(cur, action, run_id, rollback_run_id):
    schema, table = split_qualified(action["table"])
    name = derived_name(schema, table, suffix="rolledback")
    cur.execute(sql.SQL("SELECT count(*) FROM {0}.{1}").format(sql.Identifier(schema), sql.Identifier(table)))
    rows = cur.fetchone()[0]
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(sql.Identifier(QUARANTINE_SCHEMA)))
    cur.execute(sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(QUARANTINE_SCHEMA)))
    cur.execute(sql.SQL("ALTER TABLE {0}.{1} RENAME TO {2}").format(
        sql.Identifier(QUARANTINE_SCHEMA), sql.Identifier(table), sql.Identifier(name)))
    cur.execute("INSERT INTO pgsafe.quarantined_object (run_id, kind, original_schema, original_name, quarantine_schema,"
                " quarantine_name, reason, row_count, retain_until) VALUES (%s, 'table', %s, %s, %s, %s, %s, %s, "
                "now() + interval '30 days')",
                (rollback_run_id, schema, table, QUARANTINE_SCHEMA, name,
                 "created by run {0}, set aside by its rollback".format(run_id), rows))
    return "set aside as {0}.{1} ({2} rows)".format(QUARANTINE_SCHEMA, name, rows)


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            run_id=dict(type="str"),
            playbooks=dict(type="list", elements="str",
                           default=["sprint90_prod", "sprint90_dev", "sprint90_rehearsal", "schema_fix", "cleanup"]),
            rollback_run_id=dict(type="str", required=True),
            pg_bin_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        conn = connect(p, read_only=module.check_mode)
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    try:
        with conn.cursor() as cur:
            if not meta_schema_installed(cur):
                module.exit_json(changed=False, run_id=None, actions=[], msg="no pgsafe run recorded: nothing to undo")
            run_id = p["run_id"] or newest_undoable_run(cur, p["playbooks"])
            if run_id is None:
                module.exit_json(changed=False, run_id=None, actions=[], msg="no run to undo: already converged")
            entries = read_journal(cur, run_id)
            if not entries:
                module.fail_json(msg="run {0} has no journal in this database: check the run id (pgsafe.run)".format(
                    run_id))
            try:
                actions = plan_rollback(entries)
                for action in actions:
                    if action["action"] == "restore_schema":
                        action["locations"] = backup_locations(cur, action["backup_id"])
            except RollbackError as exc:
                module.fail_json(msg=str(exc), run_id=run_id)
        conn.rollback()
        if module.check_mode or not actions:
            module.exit_json(changed=bool(actions), run_id=run_id, actions=actions)
        conn.autocommit = True
        for action in actions:
            with conn.cursor() as cur:
                if action["action"] == "sql":
                    cur.execute(action["sql"])
                    action["outcome"] = "rollback SQL executed"
                elif action["action"] == "set_aside_created_target":
                    cur.execute("BEGIN")
                    action["outcome"] = set_aside(cur, action, run_id, p["rollback_run_id"])
                    cur.execute("COMMIT")
                elif action["action"] == "restore_schema":
                    from ansible.module_utils.pgsafe_backup import BackupError
                    from ansible.module_utils.pgsafe_backup_exec import restore_objects
                    errors = []
                    for location in action["locations"]:
                        try:
                            restore_objects(p, location, ["schema:" + action["schema"]], bin_dir=p["pg_bin_dir"])
                            action["outcome"] = "restored from {0}".format(location)
                            break
                        except BackupError as exc:
                            errors.append("{0}: {1}".format(location, exc))
                    else:
                        module.fail_json(msg="cannot restore schema {0} from backup {1}: {2}".format(
                            action["schema"], action["backup_id"], " | ".join(errors)), run_id=run_id, actions=actions)
                else:
                    module.fail_json(msg="step {0} (journal {1}) cannot be undone automatically: {2}".format(
                        action["step"], action["journal_id"], action.get("note")), run_id=run_id, actions=actions)
                journal(cur, p["rollback_run_id"], "rollback:{0}".format(action["journal_id"]), "completed",
                        obj=action["object"], details={"undoes_run": run_id, "action": action["action"],
                                                       "outcome": action.get("outcome")})
                cur.execute("INSERT INTO pgsafe.journal (run_id, step, object, status, details) "
                            "VALUES (%s, %s, %s, 'completed', %s::jsonb)",
                            (run_id, "rollback:{0}".format(action["journal_id"]), action["object"],
                             json.dumps({"rollback_run_id": p["rollback_run_id"]})))
        with conn.cursor() as cur:
            cur.execute("UPDATE pgsafe.run SET status = 'rolled_back' WHERE run_id = %s", (run_id,))
    finally:
        conn.close()
    module.exit_json(changed=True, run_id=run_id, actions=actions)


if __name__ == "__main__":
    main()
