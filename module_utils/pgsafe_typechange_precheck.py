# -*- coding: utf-8 -*-
"""Precheck of a type change on the real data (read only): values that do not cast, values that normalise,
collisions on unique columns, orphans after the cast; and the verdict drawn from the findings.

Precheck castability (documented choice):
* server >= 16: ``pg_input_is_valid(value, target_type)``: the server's own input function.
* server < 16, target uuid: first the exact cast of every value in a SAVEPOINT (one cheap scan); when it fails,
  a strict regex of exactly what ``uuid_in`` accepts (32 hex digits,
  optional hyphen after each group of 4, optional surrounding braces, nothing else: no spaces).
  Rows the regex accepts are cast with the real ``::uuid`` in the same SELECT (so a disagreement
  can only make the precheck fail, never pass wrongly); every value the regex rejects is then cast
  by the server one by one inside a SAVEPOINT of the read-only transaction, and is reported only if
  the server rejects it too.  No function is created, nothing is written.
* server < 16, varchar(n)/char(n): ``length(value) > n`` (the ALTER keeps assignment semantics, so
  an overlong value would error, never truncate).
* anything else (or an explicit ``using``): the exact expression over every row in a SAVEPOINT; on
  error, the distinct offending values are located with per-value SAVEPOINT casts (capped).
"""
from __future__ import annotations

import json

from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_locks import RETRYABLE
from ansible.module_utils.pgsafe_typechange_parse import UUID_REGEX, is_uuid_target, varchar_limit
from ansible.module_utils.pgsafe_quarantine import pk_object as pk_json
from ansible.module_utils.pgsafe_typechange_sql import _ident, after_value, cast_expr

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = None
    sql = None

SAMPLE_LIMIT = 20
SCAN_CAP = 10000


def precheck(cur, plan, orphan_policy, server_version_num, disk=None, orphans_found=None):
    """Read-only checks on the real data.  Returns the raw findings (see interpret_precheck).

    ``orphans_found`` (a dict) receives every orphan's primary key per declared FK, for
    quarantine_set in the same transaction.
    """
    raw = {"invalid": [], "normalising": [], "collisions": [], "orphans": [], "orphan_policy": orphan_policy,
           "nulls": [], "disk": disk}
    facts_pk = plan["_facts"]["tables"]
    bad_cols = set()
    for c in plan["changes"]:
        if not c["needs_type"] and not c["needs_not_null"]:
            continue
        key = (c["schema"], c["table"])
        pk = facts_pk[key]["pk"] or [c["column"]]
        tbl = _ident(*key)
        col = sql.Identifier(c["column"])
        label = qualified(*key)
        if c["needs_type"]:
            found = _invalid_values(cur, c, tbl, col, pk, server_version_num)
            raw["invalid"].append(dict(found, table=label, column=c["column"], type=c["type"]))
            if found["count"]:
                bad_cols.add(key + (c["column"],))
        if c["not_null"] or c["notnull"]:
            cur.execute(sql.SQL("SELECT count(*) FROM {0} WHERE {1} IS NULL").format(tbl, col))
            n = cur.fetchone()[0]
            if n:
                cur.execute(sql.SQL("SELECT {0} FROM {1} t WHERE t.{2} IS NULL LIMIT %s").format(
                    pk_json(pk, "t"), tbl, col), (SAMPLE_LIMIT,))
                raw["invalid"].append({"table": label, "column": c["column"], "type": c["type"] + " NOT NULL",
                                       "count": n, "samples": [{"pk": r[0], "value": None} for r in cur.fetchall()]})
                bad_cols.add(key + (c["column"],))
        if c["needs_type"] and is_uuid_target(c["type"]) and not c["using"] and key + (c["column"],) not in bad_cols:
            norm = sql.SQL("CAST({0} AS uuid)::text").format(col)
            cur.execute(sql.SQL("SELECT count(*) FROM {0} WHERE {1} IS NOT NULL AND {1}::text <> {2}").format(
                tbl, col, norm))
            n = cur.fetchone()[0]
            samples = []
            if n:
                cur.execute(sql.SQL("SELECT {0}, {1}::text, {2} FROM {3} t WHERE {1} IS NOT NULL AND {1}::text <> {2} "
                                    "LIMIT %s").format(pk_json(pk, "t"), col, norm, tbl), (SAMPLE_LIMIT,))
                samples = [{"pk": r[0], "value": r[1], "normalised": r[2]} for r in cur.fetchall()]
            raw["normalising"].append({"table": label, "column": c["column"], "count": n, "samples": samples})
            # Two values of a unique column collide only when one is not in its canonical spelling: with none
            # (n == 0) each value IS its normalised text, so distinct values stay distinct (no second scan).
            if _is_unique_column(facts_pk[key], c["column"]) and not n:
                raw["collisions"].append({"table": label, "column": c["column"], "type": c["type"], "count": 0,
                                          "samples": []})
            elif _is_unique_column(facts_pk[key], c["column"]):
                cur.execute(sql.SQL("SELECT {2}, array_agg({1}::text ORDER BY {1}::text) FROM {0} WHERE {1} IS NOT NULL "
                                    "GROUP BY 1 HAVING count(DISTINCT {1}::text) > 1 LIMIT %s").format(tbl, col, norm),
                            (SAMPLE_LIMIT,))
                rows = cur.fetchall()
                raw["collisions"].append({"table": label, "column": c["column"], "type": c["type"], "count": len(rows),
                                          "samples": [{"normalised": r[0], "values": list(r[1])} for r in rows]})
    raw["bad_columns"] = sorted(bad_cols)
    if not bad_cols and not any(x["count"] for x in raw["collisions"]):
        for fk in plan["foreign_keys"]:
            if fk["state"] == "valid":
                continue
            found = find_orphans(cur, plan, fk, limit=SAMPLE_LIMIT)
            raw["orphans"].append({"fk": fk["name"], "table": qualified(fk["schema"], fk["table"]),
                                   "count": found["count"], "samples": found["samples"]})
            if orphans_found is not None:
                orphans_found[fk["name"]] = found["pks"]
    return raw


def _is_unique_column(t, column):
    return any(i["unique"] and i["columns"] == [column] for i in t["indexes"])


def _invalid_values(cur, change, tbl, col, pk, server_version_num):
    """Rows whose value does not convert with the exact cast that will run."""
    pkj = pk_json(pk, "t")
    target = change["type"]
    if not change["using"] and server_version_num >= 160000:
        cond = sql.SQL("t.{0} IS NOT NULL AND NOT pg_input_is_valid(t.{0}::text, %s)").format(col)
        return _count_and_sample(cur, tbl, pkj, col, cond, (target,))
    if not change["using"] and is_uuid_target(target):
        # The exact cast over every row first (one cheap scan: uuid_in, no regex); only when some value does
        # not cast, the regex of what uuid_in accepts finds them (accepted rows really cast in the same statement).
        if _all_values_cast(cur, cast_expr(change, sql.SQL("t.{0}").format(col), "t"), tbl)[0]:
            return {"count": 0, "samples": [], "method": "server cast of every value in a savepoint"}
        cur.execute(sql.SQL("SELECT count(*), count(CASE WHEN t.{0}::text ~ %s THEN CAST(t.{0} AS uuid) END) "
                            "FROM {1} t WHERE t.{0} IS NOT NULL").format(col, tbl), (UUID_REGEX,))
        total, accepted = cur.fetchone()
        if total == accepted:  # every value matched the regex and was cast: nothing to list
            return {"count": 0, "samples": [], "method": "uuid regex + server cast of each rejected value"}
        cur.execute(sql.SQL("SELECT {0}, t.{1}::text FROM {2} t WHERE t.{1} IS NOT NULL AND NOT (t.{1}::text ~ %s) "
                            "LIMIT %s").format(pkj, col, tbl), (UUID_REGEX, SCAN_CAP))
        rejected = cur.fetchall()
        confirmed = [r for r in rejected if not _server_casts(cur, r[1], sql.SQL("uuid"))]
        count = len(confirmed)
        if len(rejected) == SCAN_CAP:
            cur.execute(sql.SQL("SELECT count(*) FROM {0} t WHERE t.{1} IS NOT NULL AND NOT (t.{1}::text ~ %s)").format(
                tbl, col), (UUID_REGEX,))
            count = max(count, cur.fetchone()[0])
        return {"count": count, "samples": [{"pk": r[0], "value": r[1]} for r in confirmed[:SAMPLE_LIMIT]],
                "method": "uuid regex + server cast of each rejected value"}
    limit = varchar_limit(target)
    if not change["using"] and limit is not None:
        cond = sql.SQL("length(t.{0}::text) > %s").format(col)
        return _count_and_sample(cur, tbl, pkj, col, cond, (limit,), method="length <= {0}".format(limit))
    if not change["using"] and target == "text":
        return {"count": 0, "samples": [], "method": "every value casts to text"}
    # Generic: the exact expression over every row; on error, find the offending values one by one.
    expr = cast_expr(change, sql.SQL("t.{0}").format(col), "t")
    ok, first_error = _all_values_cast(cur, expr, tbl)
    if ok:
        return {"count": 0, "samples": [], "method": "full cast in a savepoint"}
    cur.execute(sql.SQL("SELECT {0}, t.{1}::text FROM {2} t LIMIT %s").format(pkj, col, tbl), (SCAN_CAP * 10,))
    bad = []
    for pkv, value in cur.fetchall():
        cur.execute("SAVEPOINT pgsafe_cast")
        try:
            cur.execute(sql.SQL("SELECT {0} FROM {1} t WHERE {2} = %s::jsonb").format(
                expr, tbl, pk_json(pk, "t")), (json.dumps(pkv),))
            cur.execute("RELEASE SAVEPOINT pgsafe_cast")
        except psycopg2.Error:
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast")
            bad.append({"pk": pkv, "value": value})
    return {"count": max(len(bad), 1), "samples": bad[:SAMPLE_LIMIT] or [{"pk": None, "value": first_error}],
            "method": "full cast in a savepoint, then per row"}


def _all_values_cast(cur, expr, tbl):
    """(True, None) when ``expr`` (the exact cast, over alias ``t``) succeeds for every row of ``tbl``, else
    (False, the server's first error line); in a SAVEPOINT of the caller's read-only transaction.  A timeout
    or lock error says nothing about the values: raised."""
    cur.execute("SAVEPOINT pgsafe_cast")
    try:
        cur.execute(sql.SQL("SELECT count({0}) FROM {1} t").format(expr, tbl))
        cur.execute("RELEASE SAVEPOINT pgsafe_cast")
        return True, None
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast")
        if getattr(exc, "pgcode", None) in ("57014",) + RETRYABLE:
            raise
        return False, str(exc).strip().splitlines()[0]


def _server_casts(cur, value, type_sql):
    cur.execute("SAVEPOINT pgsafe_cast")
    try:
        cur.execute(sql.SQL("SELECT CAST(%s::text AS {0})").format(type_sql), (value,))
        cur.execute("RELEASE SAVEPOINT pgsafe_cast")
        return True
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast")
        return False


def _count_and_sample(cur, tbl, pkj, col, cond, params, method="pg_input_is_valid"):
    cur.execute(sql.SQL("SELECT count(*) FROM {0} t WHERE {1}").format(tbl, cond), params)
    n = cur.fetchone()[0]
    samples = []
    if n:
        cur.execute(sql.SQL("SELECT {0}, t.{1}::text FROM {2} t WHERE {3} LIMIT %s").format(pkj, col, tbl, cond),
                    tuple(params) + (SAMPLE_LIMIT,))
        samples = [{"pk": r[0], "value": r[1]} for r in cur.fetchall()]
    return {"count": n, "samples": samples, "method": method}


def find_orphans(cur, plan, fk, limit=None):
    """Child rows of a declared FK with no parent, comparing the values AFTER the planned casts."""
    facts = plan["_facts"]["tables"]
    child = (fk["schema"], fk["table"])
    parent = (fk["ref_schema"], fk["ref_table"])
    pk = facts[child]["pk"] or fk["columns"]
    conds = [sql.SQL("{0} = {1}").format(
        after_value(plan["changes"], parent[0], parent[1], rc, "p"),
        after_value(plan["changes"], child[0], child[1], c, "c"))
        for c, rc in zip(fk["columns"], fk["ref_columns"], strict=True)]
    notnull = sql.SQL(" AND ").join(sql.SQL("c.{0} IS NOT NULL").format(sql.Identifier(c)) for c in fk["columns"])
    q = sql.SQL("SELECT {0} FROM {1} c WHERE {2} AND NOT EXISTS (SELECT 1 FROM {3} p WHERE {4})").format(
        pk_json(pk, "c"), _ident(*child), notnull, _ident(*parent), sql.SQL(" AND ").join(conds))
    cur.execute(q)
    rows = [r[0] for r in cur.fetchall()]
    return {"count": len(rows), "samples": [{"pk": r} for r in (rows[:limit] if limit else rows)], "pks": rows}


def interpret_precheck(raw):
    """Turn raw precheck findings into a verdict: {ok, problems[], notes[]}.

    raw: {invalid: [{table, column, count, samples}], normalising: [...], collisions: [...],
          orphans: [{fk, count, samples}], disk: {...}, orphan_policy}
    """
    problems, notes = [], []
    for item in raw.get("invalid", []):
        if item["count"]:
            problems.append("{0}.{1}: {2} value(s) do not cast to {3}: {4}".format(
                item["table"], item["column"], item["count"], item["type"],
                ", ".join("{0} -> {1!r}".format(json.dumps(s["pk"], sort_keys=True), s["value"])
                          for s in item["samples"])))
    for item in raw.get("normalising", []):
        if item["count"]:
            notes.append("{0}.{1}: {2} value(s) castable, will normalise (e.g. {3})".format(
                item["table"], item["column"], item["count"],
                ", ".join("{0!r} -> {1}".format(s["value"], s["normalised"]) for s in item["samples"][:5])))
    for item in raw.get("collisions", []):
        if item["count"]:
            problems.append("{0}.{1}: {2} group(s) of distinct values become the same {3} (collision): {4}".format(
                item["table"], item["column"], item["count"], item["type"],
                "; ".join("{0} <- {1}".format(s["normalised"], ", ".join(repr(v) for v in s["values"]))
                          for s in item["samples"])))
    policy = raw.get("orphan_policy", "fail")
    for item in raw.get("orphans", []):
        if item["count"]:
            msg = "foreign key {0}: {1} orphan row(s) in {2} (compared after the cast): {3}".format(
                item["fk"], item["count"], item["table"],
                ", ".join(json.dumps(s["pk"], sort_keys=True) for s in item["samples"]))
            if policy == "fail":
                problems.append(msg + " (orphan_policy fail: fix the data or use orphan_policy quarantine)")
            else:
                notes.append(msg + " -> quarantined")
    if raw.get("would_quarantine"):
        notes.append("would quarantine (orphans and the rows depending on them): " + ", ".join(
            "{0}: {1}".format(k, v) for k, v in sorted(raw["would_quarantine"].items())))
    disk = raw.get("disk")
    if disk and not disk["ok"]:
        problems.append("not enough disk: " + disk["note"])
    return {"ok": not problems, "problems": problems, "notes": notes}
