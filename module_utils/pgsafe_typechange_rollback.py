# -*- coding: utf-8 -*-
"""Rollback SQL of a type change: columns, defaults, views and FKs put back as they were, then the
quarantined rows (pgsafe_quarantine's restore SQL).  Pure text, journaled with the change.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_identifiers import qualified, quote_ident
from ansible.module_utils.pgsafe_quarantine import restore_sql


def rollback_sql(plan, run_id):
    """SQL that puts the columns, defaults and FKs back as they were, then the quarantined rows back."""
    lines = ["-- pgsafe rollback of type change run {0}".format(run_id), "BEGIN;",
             "SET LOCAL lock_timeout = '10s';"]
    for f in plan["foreign_keys"]:
        if f["state"] != "valid":
            lines.append("ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1};".format(
                qualified(f["schema"], f["table"]), quote_ident(f["name"])))
    for f in plan["drop_fks"]:
        if f["recreate"]:
            lines.append("ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1};".format(
                qualified(f["schema"], f["table"]), quote_ident(f["name"])))
    for v in plan["views"]:
        lines.append("DROP VIEW IF EXISTS {0};".format(qualified(v["schema"], v["name"])))
    for c in plan["changes"]:
        tbl = qualified(c["schema"], c["table"])
        col = quote_ident(c["column"])
        if c["needs_type"]:
            lines.append("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT;".format(tbl, col))
            lines.append("ALTER TABLE {0} ALTER COLUMN {1} TYPE {2} USING {1}::{2};".format(tbl, col, c["from_type"]))
        if c["needs_type"] or c["needs_default"]:
            if c["default_before"]:
                lines.append("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2};".format(tbl, col, c["default_before"]))
            else:
                lines.append("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT;".format(tbl, col))
        if c["needs_not_null"]:
            lines.append("ALTER TABLE {0} ALTER COLUMN {1} DROP NOT NULL;".format(tbl, col))
    for v in plan["views"]:
        lines.append("CREATE VIEW {0} AS {1}".format(qualified(v["schema"], v["name"]), v["definition"].strip()))
    for f in plan["drop_fks"]:
        lines.append("ALTER TABLE {0} ADD CONSTRAINT {1} {2};".format(
            qualified(f["schema"], f["table"]), quote_ident(f["name"]), f["definition"]))
    lines.append(restore_sql(run_id).strip())
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"
