# -*- coding: utf-8 -*-
"""The rewrite strategy of a type change: one transaction under ACCESS EXCLUSIVE locks (quarantine, drop FKs
and views, one ALTER TABLE per table, views and FKs back NOT VALID, content check), then VALIDATE.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_content_hash import EMPTY_HASH, add_hashes
from ansible.module_utils.pgsafe_identifiers import split_qualified
from ansible.module_utils.pgsafe_locks import lock_tables
from ansible.module_utils.pgsafe_typechange_parse import TypeChangeError, varchar_limit
from ansible.module_utils.pgsafe_typechange_sql import (_ident, _type_sql, add_fks_not_valid, drop_fks, drop_views,
                                                        recreate_views, table_hash)

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None


def set_defaults_sql(change):
    tbl = _ident(change["schema"], change["table"])
    col = sql.Identifier(change["column"])
    if change["set_default"]:
        if change["default"]:
            return [sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2}").format(tbl, col, sql.SQL(change["default"]))]
        return [sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT").format(tbl, col)]
    return []


def rewrite_statements(plan):
    """ALTER TABLE statements of the rewrite: one per table, every changed column of it in one rewrite."""
    by_table = {}
    for c in plan["changes"]:
        if c["needs_type"] or c["needs_default"] or c["needs_not_null"]:
            by_table.setdefault((c["schema"], c["table"]), []).append(c)
    stmts = []
    for key, cols in by_table.items():
        actions = []
        for c in cols:
            col = sql.Identifier(c["column"])
            if c["needs_type"]:
                if c["default_before"] and c["set_default"]:
                    actions.append(sql.SQL("ALTER COLUMN {0} DROP DEFAULT").format(col))
                if c["using"]:
                    using = sql.SQL(" USING ({0})").format(sql.SQL(c["using"]))
                elif varchar_limit(c["type"]) is not None or c["type"] == "text":
                    using = sql.SQL("")  # assignment cast: an overlong value errors instead of truncating
                else:
                    using = sql.SQL(" USING CAST({0} AS {1})").format(col, _type_sql(c["type"]))
                collate = sql.SQL(" COLLATE {0}").format(sql.SQL(c["collation"])) if c.get("collation") else sql.SQL("")
                actions.append(sql.SQL("ALTER COLUMN {0} TYPE {1}{2}{3}").format(col, _type_sql(c["type"]), collate,
                                                                                using))
            if c["needs_not_null"]:
                actions.append(sql.SQL("ALTER COLUMN {0} SET NOT NULL").format(col))
        stmts.append(sql.SQL("ALTER TABLE {0} ").format(_ident(*key)) + sql.SQL(", ").join(actions))
        for c in cols:
            if c["needs_type"] or c["needs_default"]:
                stmts += set_defaults_sql(c)
    return stmts


class RewriteStrategy:
    """Runner's rewrite (needs the Runner's plumbing: txn, journal, quarantine, validate)."""

    def rewrite(self):
        self.journal("typechange:rewrite", "started", ",".join(self.plan["touched_tables"]),
                     {"steps": self.plan["steps"]})

        def work(cur):
            lock_tables(cur, self.lock_plan())
            keys = self.changed_tables()
            before = self.hash_tables(cur, keys) if self.verify else {}
            moved = self.quarantine(cur)
            for name in moved:
                key = split_qualified(name)
                if self.verify and name not in before:
                    before[name] = table_hash(cur, key[0], key[1], list(self.facts[key]["columns"]),
                                              self.plan["changes"])
                    before[name]["rows"] += moved[name]["rows"]
                    before[name]["hash"] = add_hashes(before[name]["hash"], moved[name]["hash"])
            drop_fks(cur, self.plan)
            drop_views(cur, self.plan)
            for stmt in rewrite_statements(self.plan):
                cur.execute(stmt)
            recreate_views(cur, self.plan)
            added = add_fks_not_valid(cur, self.plan)
            if self.verify:
                after = {}
                for name in before:
                    key = split_qualified(name)
                    after[name] = table_hash(cur, key[0], key[1], list(self.facts[key]["columns"]), self.plan["changes"],
                                             after=True)
                self.check_content(before, after, moved)
            self.journal("typechange:rewrite", "completed", ",".join(self.plan["touched_tables"]),
                         {"fks_added_not_valid": added, "quarantined": {k: v["rows"] for k, v in moved.items()}},
                         self.rollback, cur=cur)
            return added

        try:
            self.txn("type change (rewrite)", work)
        except Exception as exc:
            self._journal_failure("typechange:rewrite", exc)
            raise
        return self.validate()

    def check_content(self, before, after, moved):
        for name, b in before.items():
            a = after[name]
            m = moved.get(name, {"rows": 0, "hash": EMPTY_HASH})
            self.counts[name] = {"before": b["rows"], "after": a["rows"], "quarantined": m["rows"]}
            if b["rows"] != a["rows"] + m["rows"] or b["hash"] != add_hashes(a["hash"], m["hash"]):
                raise TypeChangeError("content check failed on {0}: before {1} rows (hash {2}) != after {3} + "
                                      "quarantined {4} (hash {5} + {6}); rolled back".format(
                                          name, b["rows"], b["hash"], a["rows"], m["rows"], a["hash"], m["hash"]))
