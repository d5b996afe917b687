# -*- coding: utf-8 -*-
"""Table merge: copy a duplicate table into the one the code uses, prove it, then retire the source.

The contract (shared/spec/fault-cases.md cases 16-18):

* an explicit column mapping (``{"userId": "user_id", ...}``): every source column is mapped or
  explicitly listed in ``drop_source_columns``; every target column that is NOT NULL without a
  default, and every target primary-key column, is mapped.  Where types differ the value is cast to
  the target column's declared type;
* a precheck on the real rows lists every row whose mapped value does not cast, would be changed
  by the cast (truncated, rounded, re-spelled: "lossy"), is NULL for a NOT NULL target column, or
  points at a missing parent of one of the target's foreign keys;
* primary-key collisions: identical rows are skipped; differing rows fail the merge (policy
  ``fail``, the default) or, with policy ``keep_target``, the target row stays and the source row is
  copied to ``pgsafe.quarantine_row``;
* everything runs in ONE transaction with the source locked against writes (SHARE ROW EXCLUSIVE;
  the row count is compared again at the end): a failure anywhere leaves no partial insert;
* proof before the source goes: EXCEPT both ways over the mapped columns (source rows not in the
  target, target rows of the source's keys not in the source) and an ordered content hash of both
  sides; quarantined rows are proven present in ``pgsafe.quarantine_row`` by their sha256;
* the source is then retired through :mod:`pgsafe_retire` in the same transaction (moved to the
  quarantine schema with a retention date, never dropped).

A missing target is created from the code's reference DDL (the CREATE TABLE and the CREATE INDEX
statements of that table, extracted from e.g. files/reference/bazaar_vid.sql).
"""
from __future__ import annotations

import json
import re

from ansible.module_utils.pgsafe_content_hash import mapped_rows_hash, table_content_hash, table_kinds
from ansible.module_utils.pgsafe_identifiers import qualified, split_qualified
from ansible.module_utils.pgsafe_locks import lock_statements
from ansible.module_utils.pgsafe_merge_ddl import (MergeError, added_foreign_keys, parse_create_table,
                                                   statements_for_table)
from ansible.module_utils.pgsafe_meta import journal
from ansible.module_utils.pgsafe_quarantine import pk_object, row_sha256, write_rows
from ansible.module_utils.pgsafe_retire import (dependencies, exact_count, privilege_problems, quarantine_record,
                                                retire_table, table_oid)

POLICIES = ("fail", "keep_target")


def _sql():
    from psycopg2 import sql
    return sql


# --------------------------------------------------------------------------- mapping (pure)
def normalize_mapping(mapping):
    """``{source: target}`` or ``[{source, target}]`` as an ordered list of (source, target) pairs."""
    if isinstance(mapping, dict):
        pairs = list(mapping.items())
    elif isinstance(mapping, list):
        pairs = []
        for entry in mapping:
            if not isinstance(entry, dict) or "source" not in entry or "target" not in entry:
                raise MergeError("each column mapping entry needs 'source' and 'target', got {0!r}".format(entry))
            pairs.append((entry["source"], entry["target"]))
    else:
        raise MergeError("column_map must be a dict {source_column: target_column} or a list of {source, target}")
    if not pairs:
        raise MergeError("column_map is empty: map every source column explicitly")
    targets = [t for _s, t in pairs]
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise MergeError("column_map maps several source columns onto {0}".format(", ".join(dupes)))
    return [(str(s), str(t)) for s, t in pairs]


def validate_mapping(source_columns, target_columns, target_pk, pairs, drop_source_columns=()):
    """Problems with the mapping itself (names, coverage), as a list of messages (empty = fine)."""
    problems = []
    src = {c["name"]: c for c in source_columns}
    tgt = {c["name"]: c for c in target_columns}
    mapped_src = {s for s, _t in pairs}
    mapped_tgt = {t for _s, t in pairs}
    for s, t in pairs:
        if s not in src:
            problems.append("source column {0} does not exist (columns: {1})".format(s, ", ".join(src)))
        if t not in tgt:
            problems.append("target column {0} does not exist (columns: {1})".format(t, ", ".join(tgt)))
    for name in src:
        if name not in mapped_src and name not in drop_source_columns:
            problems.append("source column {0} is not mapped: map it, or list it in drop_source_columns to accept "
                            "losing its values".format(name))
    for name, col in tgt.items():
        if name not in mapped_tgt and col["not_null"] and not col["has_default"]:
            problems.append("target column {0} is NOT NULL without a default and nothing is mapped onto it".format(
                name))
    for name in target_pk:
        if name not in mapped_tgt:
            problems.append("target primary-key column {0} must be mapped (collisions are detected on it)".format(
                name))
    if not target_pk:
        problems.append("the target has no primary key: collisions cannot be detected; add one first")
    return problems


# --------------------------------------------------------------------------- catalog
def table_columns(cur, schema, name):
    cur.execute("""
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef OR a.attidentity <> ''
          FROM pg_attribute a
         WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = %s AND c.relname = %s)
           AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
    """, (schema, name))
    return [{"name": r[0], "type": r[1], "not_null": r[2], "has_default": r[3]} for r in cur.fetchall()]


def primary_key(cur, oid):
    cur.execute("""
        SELECT a.attname FROM pg_constraint c
          JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, ord) ON true
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
         WHERE c.conrelid = %s AND c.contype = 'p' ORDER BY k.ord
    """, (oid,))
    return [r[0] for r in cur.fetchall()]


def foreign_keys(cur, oid):
    cur.execute("""
        SELECT c.conname, rn.nspname, r.relname,
               array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
               array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
          FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
         WHERE c.conrelid = %s AND c.contype = 'f'
    """, (oid,))
    return [{"name": r[0], "ref_schema": r[1], "ref_table": r[2], "columns": list(r[3]), "ref_columns": list(r[4])}
            for r in cur.fetchall()]


def _check_type(cur, type_text):
    if not re.match(r"^[A-Za-z0-9_ ,()\[\]\".]+$", type_text or ""):
        raise MergeError("unsupported column type text {0!r} in the target definition".format(type_text))
    cur.execute("SELECT to_regtype(%s) IS NOT NULL", (type_text,))
    if not cur.fetchone()[0]:
        raise MergeError("target column type {0!r} is unknown to this server".format(type_text))


class Context:
    """Everything the merge knows about source, target and mapping (built from the catalog or the DDL)."""

    def __init__(self, cur, source, target, column_map, policy="fail", target_definition=None,
                 drop_source_columns=(), allow_lossy_casts=False, sample_limit=20):
        if policy not in POLICIES:
            raise MergeError("policy must be one of {0}, got {1!r}".format(", ".join(POLICIES), policy))
        self.source_schema, self.source_name = split_qualified(source)
        self.target_schema, self.target_name = split_qualified(target)
        self.source = qualified(self.source_schema, self.source_name)
        self.target = qualified(self.target_schema, self.target_name)
        self.pairs = normalize_mapping(column_map)
        self.policy = policy
        self.drop_source_columns = list(drop_source_columns or [])
        self.allow_lossy_casts = allow_lossy_casts
        self.sample_limit = sample_limit
        self.target_definition = target_definition
        self.source_oid = table_oid(cur, self.source_schema, self.source_name)
        self.target_oid = table_oid(cur, self.target_schema, self.target_name)
        self.target_statements = None
        self.refresh(cur)

    def refresh(self, cur):
        """(Re)read both tables' columns, keys and FKs; the target from the DDL while it does not exist."""
        self.target_oid = table_oid(cur, self.target_schema, self.target_name)
        if self.target_oid is not None:
            self.target_columns = table_columns(cur, self.target_schema, self.target_name)
            self.target_pk = primary_key(cur, self.target_oid)
            self.target_fks = foreign_keys(cur, self.target_oid)
        else:
            if not self.target_definition:
                raise MergeError("target {0} does not exist and no target_definition (the code's DDL) was given: "
                                 "pass the reference SQL so the target can be created".format(self.target))
            self.target_statements = statements_for_table(self.target_definition, self.target_name)
            parsed = parse_create_table(self.target_statements[0])
            for col in parsed["columns"]:
                _check_type(cur, col["type"])
            self.target_columns = parsed["columns"]
            self.target_pk = parsed["primary_key"]
            self.target_fks = [dict(fk, ref_schema=fk["ref_schema"] or self.target_schema)
                               for fk in parsed["foreign_keys"] + added_foreign_keys(self.target_statements[1:])]
        if self.source_oid is not None:
            self.source_columns = table_columns(cur, self.source_schema, self.source_name)
            self.source_pk = primary_key(cur, self.source_oid)
        else:
            self.source_columns, self.source_pk = [], []
        self.src_by_name = {c["name"]: c for c in self.source_columns}
        self.tgt_by_name = {c["name"]: c for c in self.target_columns}
        self.t2s = {t: s for s, t in self.pairs}

    def mapping_problems(self):
        return validate_mapping(self.source_columns, self.target_columns, self.target_pk, self.pairs,
                                self.drop_source_columns)

    # SQL pieces -----------------------------------------------------------
    def differs(self, s, t):
        return self.src_by_name[s]["type"] != self.tgt_by_name[t]["type"]

    def expr(self, s, t, alias="s"):
        """The source column as a value of the target column's type."""
        sql = _sql()
        col = sql.SQL("{0}.{1}").format(sql.Identifier(alias), sql.Identifier(s))
        if not self.differs(s, t):
            return col
        return sql.SQL("CAST({0} AS {1})").format(col, sql.SQL(self.tgt_by_name[t]["type"]))

    def source_ref(self):
        sql = _sql()
        return sql.SQL("{0}.{1}").format(sql.Identifier(self.source_schema), sql.Identifier(self.source_name))

    def target_ref(self):
        sql = _sql()
        return sql.SQL("{0}.{1}").format(sql.Identifier(self.target_schema), sql.Identifier(self.target_name))

    def mapped_exprs(self, alias="s"):
        sql = _sql()
        return sql.SQL(", ").join(self.expr(s, t, alias) for s, t in self.pairs)

    def target_cols(self, alias="t"):
        sql = _sql()
        return sql.SQL(", ").join(sql.SQL("{0}.{1}").format(sql.Identifier(alias), sql.Identifier(t))
                                  for _s, t in self.pairs)

    def key_join(self):
        sql = _sql()
        return sql.SQL(" AND ").join(
            sql.SQL("t.{0} = {1}").format(sql.Identifier(k), self.expr(self.t2s[k], k)) for k in self.target_pk)

    def source_key_columns(self):
        """The source's primary key, or the source columns mapped onto the target's."""
        return self.source_pk or [self.t2s[k] for k in self.target_pk]

    def source_pk_json(self, alias="s"):
        return pk_object(self.source_key_columns(), alias)

    def keys_in(self, cur, keys, alias="s"):
        """A condition (values bound in) true for the source rows (aliased ``alias``) whose key is in ``keys``."""
        sql = _sql()
        cond = sql.SQL("{0} = ANY(%s::jsonb[])").format(self.source_pk_json(alias))
        return sql.SQL(cur.mogrify(cond.as_string(cur), ([json.dumps(k, sort_keys=True) for k in keys],)).decode())


# --------------------------------------------------------------------------- precheck
def _bad_values(cur, src_type, tgt_type, values):
    """Values (as text) that do not cast from the source type to the target type (bisection with savepoints)."""
    sql = _sql()
    bad = []
    stack = [values]
    query = sql.SQL("SELECT count(CAST(CAST(v AS {0}) AS {1})) FROM unnest(%s::text[]) v").format(
        sql.SQL(src_type), sql.SQL(tgt_type))
    while stack:
        chunk = stack.pop()
        if not chunk:
            continue
        cur.execute("SAVEPOINT pgsafe_cast_probe")
        try:
            cur.execute(query, (chunk,))
            cur.execute("RELEASE SAVEPOINT pgsafe_cast_probe")
            continue
        except Exception:  # noqa: BLE001 - any cast error: narrow it down
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast_probe")
            cur.execute("RELEASE SAVEPOINT pgsafe_cast_probe")
        if len(chunk) == 1:
            bad.append(chunk[0])
            if len(bad) >= 1000:
                break
            continue
        half = len(chunk) // 2
        stack.extend([chunk[half:], chunk[:half]])
    return bad


def _uncastable(cur, ctx, s, t):
    """The source values of a mapped column that do not cast to the target type at all (a problem), or None."""
    sql = _sql()
    tcol = ctx.tgt_by_name[t]
    scol_ref = sql.SQL("s.{0}").format(sql.Identifier(s))
    cur.execute("SAVEPOINT pgsafe_precheck")
    try:
        cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1} IS NOT NULL AND {2} IS NULL").format(
            ctx.source_ref(), scol_ref, ctx.expr(s, t)))
        cur.execute("RELEASE SAVEPOINT pgsafe_precheck")
        return None
    except Exception:  # noqa: BLE001
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_precheck")
        cur.execute("RELEASE SAVEPOINT pgsafe_precheck")
    cur.execute(sql.SQL("SELECT DISTINCT {0}::text FROM {1} s WHERE {0} IS NOT NULL").format(
        scol_ref, ctx.source_ref()))
    values = [r[0] for r in cur.fetchall()]
    bad = _bad_values(cur, ctx.src_by_name[s]["type"], tcol["type"], values)
    cur.execute(sql.SQL("SELECT {0}, {1}::text FROM {2} s WHERE {1}::text = ANY(%s) ORDER BY 1 "
                        "LIMIT %s").format(ctx.source_pk_json(), scol_ref, ctx.source_ref()), (bad, ctx.sample_limit))
    rows = [{"pk": r[0], "value": r[1]} for r in cur.fetchall()]
    cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1}::text = ANY(%s)").format(
        ctx.source_ref(), scol_ref), (bad,))
    return {"kind": "cast", "column": "{0} -> {1} ({2} -> {3})".format(
        s, t, ctx.src_by_name[s]["type"], tcol["type"]), "count": cur.fetchone()[0], "rows": rows,
        "message": "values that do not cast to {0}".format(tcol["type"])}


def _lossy(cur, ctx, s, t):
    """Values the cast would change (truncate, round, re-spell), as a problem unless lossy casts are allowed."""
    sql = _sql()
    tcol = ctx.tgt_by_name[t]
    scol_ref = sql.SQL("s.{0}").format(sql.Identifier(s))
    lossy = sql.SQL("{0} IS NOT NULL AND CAST({1} AS {2}) IS DISTINCT FROM {0}").format(
        scol_ref, ctx.expr(s, t), sql.SQL(ctx.src_by_name[s]["type"]))
    cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1}").format(ctx.source_ref(), lossy))
    n = cur.fetchone()[0]
    if not n or ctx.allow_lossy_casts:
        return None
    cur.execute(sql.SQL("SELECT {0}, {1}::text, ({2})::text FROM {3} s WHERE {4} ORDER BY 1 "
                        "LIMIT %s").format(ctx.source_pk_json(), scol_ref, ctx.expr(s, t), ctx.source_ref(),
                                           lossy), (ctx.sample_limit,))
    return {"kind": "lossy", "column": "{0} -> {1} ({2} -> {3})".format(
        s, t, ctx.src_by_name[s]["type"], tcol["type"]), "count": n,
        "rows": [{"pk": r[0], "value": r[1], "would_become": r[2]} for r in cur.fetchall()],
        "message": "the cast changes these values (set allow_lossy_casts to accept)"}


def _nulls(cur, ctx, s, t):
    """NULLs bound for a NOT NULL target column, as a problem, or None."""
    sql = _sql()
    scol_ref = sql.SQL("s.{0}").format(sql.Identifier(s))
    cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1} IS NULL").format(ctx.source_ref(), scol_ref))
    n = cur.fetchone()[0]
    if not n:
        return None
    cur.execute(sql.SQL("SELECT {0} FROM {1} s WHERE {2} IS NULL ORDER BY 1 LIMIT %s").format(
        ctx.source_pk_json(), ctx.source_ref(), scol_ref), (ctx.sample_limit,))
    return {"kind": "not_null", "column": "{0} -> {1}".format(s, t), "count": n,
            "rows": [{"pk": r[0], "value": None} for r in cur.fetchall()],
            "message": "NULL into NOT NULL column {0}".format(t)}


def _fk_problems(cur, ctx):
    """Source rows pointing at a missing parent of one of the target's foreign keys."""
    sql = _sql()
    problems = []
    for fk in ctx.target_fks:
        if not all(c in ctx.t2s for c in fk["columns"]):
            continue
        if table_oid(cur, fk["ref_schema"], fk["ref_table"]) is None:
            problems.append({"kind": "fk", "column": ", ".join(fk["columns"]), "count": 0, "rows": [],
                             "message": "referenced table {0} does not exist".format(
                                 qualified(fk["ref_schema"], fk["ref_table"]))})
            continue
        ref_cols = fk["ref_columns"] or primary_key(cur, table_oid(cur, fk["ref_schema"], fk["ref_table"]))
        not_null = sql.SQL(" AND ").join(sql.SQL("{0} IS NOT NULL").format(ctx.expr(ctx.t2s[c], c))
                                         for c in fk["columns"])
        join = sql.SQL(" AND ").join(sql.SQL("r.{0} = {1}").format(sql.Identifier(rc), ctx.expr(ctx.t2s[c], c))
                                     for c, rc in zip(fk["columns"], ref_cols, strict=False))
        where = sql.SQL("{0} AND NOT EXISTS (SELECT 1 FROM {1}.{2} r WHERE {3})").format(
            not_null, sql.Identifier(fk["ref_schema"]), sql.Identifier(fk["ref_table"]), join)
        cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1}").format(ctx.source_ref(), where))
        n = cur.fetchone()[0]
        if n:
            cur.execute(sql.SQL("SELECT {0} FROM {1} s WHERE {2} ORDER BY 1 LIMIT %s").format(
                ctx.source_pk_json(), ctx.source_ref(), where), (ctx.sample_limit,))
            problems.append({"kind": "fk", "column": ", ".join(fk["columns"]), "count": n,
                             "rows": [{"pk": r[0]} for r in cur.fetchall()],
                             "message": "no parent row in {0}".format(qualified(fk["ref_schema"], fk["ref_table"]))})
    return problems


def precheck(cur, ctx):
    """Rows whose mapped values would not arrive intact: [{kind, column, count, rows: [{pk, value}]}]."""
    problems = []
    if ctx.source_oid is None:
        return problems
    for s, t in ctx.pairs:
        if ctx.differs(s, t):
            found = _uncastable(cur, ctx, s, t)  # 1. values that do not cast at all
            if found is None:
                found = _lossy(cur, ctx, s, t)  # 2. values the cast would change
            if found is not None:
                problems.append(found)
        if ctx.tgt_by_name[t]["not_null"]:
            found = _nulls(cur, ctx, s, t)
            if found is not None:
                problems.append(found)
    if any(p["kind"] == "cast" for p in problems):
        return problems  # FK probes would cast the same values again
    return problems + _fk_problems(cur, ctx)


def collisions(cur, ctx):
    """(identical, differing) source rows whose key already exists in the target; differing = [{pk, columns}]."""
    sql = _sql()
    if ctx.target_oid is None or ctx.source_oid is None:
        return 0, []
    diff_cols = sql.SQL(", ").join(
        sql.SQL("CASE WHEN t.{0} IS DISTINCT FROM {1} THEN {2} END").format(sql.Identifier(t), ctx.expr(s, t),
                                                                            sql.Literal(t))
        for s, t in ctx.pairs)
    cur.execute(sql.SQL("SELECT {0}, array_remove(ARRAY[{1}]::text[], NULL) FROM {2} s JOIN {3} t ON {4} "
                        "ORDER BY 1").format(ctx.source_pk_json(), diff_cols, ctx.source_ref(),
                                                   ctx.target_ref(), ctx.key_join()))
    identical, differing = 0, []
    for pk, cols in cur.fetchall():
        if cols:
            differing.append({"pk": pk, "columns": list(cols)})
        else:
            identical += 1
    return identical, differing


# --------------------------------------------------------------------------- proof
def proof(cur, ctx, quarantined_keys_sql, run_id):
    """EXCEPT both ways over the mapped columns + content hashes (the fingerprint's canonical form: the
    source's rows as they will be against the target's) + quarantined rows present."""
    sql = _sql()
    keep = sql.SQL("NOT ({0})").format(quarantined_keys_sql)
    in_source = sql.SQL("EXISTS (SELECT 1 FROM {0} s WHERE {1} AND {2})").format(
        ctx.source_ref(), ctx.key_join(), keep)
    cur.execute(sql.SQL("SELECT count(*) FROM (SELECT {0} FROM {1} s WHERE {2} EXCEPT SELECT {3} FROM {4} t) x").format(
        ctx.mapped_exprs(), ctx.source_ref(), keep, ctx.target_cols(), ctx.target_ref()))
    missing = cur.fetchone()[0]
    cur.execute(sql.SQL("SELECT count(*) FROM (SELECT {0} FROM {1} t WHERE {2} EXCEPT "
                        "SELECT {3} FROM {4} s WHERE {5}) x").format(
        ctx.target_cols(), ctx.target_ref(), in_source, ctx.mapped_exprs(), ctx.source_ref(), keep))
    extra = cur.fetchone()[0]
    kinds = table_kinds(cur, ctx.target_schema, ctx.target_name)
    mapped = mapped_rows_hash(cur, sql.SQL("{0} AS s").format(ctx.source_ref()),
                              {t: ctx.expr(s, t, "s") for s, t in ctx.pairs}, kinds, where=keep)
    landed = table_content_hash(cur, ctx.target_schema, ctx.target_name, columns=[t for _s, t in ctx.pairs],
                                where=in_source)
    source_rows, source_hash = mapped["rows"], mapped["hash"]
    target_rows, target_hash = landed["rows"], landed["hash"]
    cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE ({1}) AND NOT EXISTS (SELECT 1 FROM pgsafe.quarantine_row q "
                        "WHERE q.run_id = %s AND q.source_schema = %s AND q.source_table = %s "
                        "AND q.row_sha256 = {2})").format(ctx.source_ref(), quarantined_keys_sql, row_sha256("s")),
                (run_id, ctx.source_schema, ctx.source_name))
    unquarantined = cur.fetchone()[0]
    ok = (missing == 0 and extra == 0 and source_rows == target_rows and source_hash == target_hash
          and unquarantined == 0)
    return {"ok": ok, "missing_in_target": missing, "differing_in_target": extra, "source_rows": source_rows,
            "target_rows": target_rows, "source_sha": source_hash, "target_sha": target_hash,
            "quarantined_rows_not_recorded": unquarantined}


# --------------------------------------------------------------------------- plan & apply
def _summary_counts(cur, ctx):
    out = {"source_exists": ctx.source_oid is not None, "target_exists": ctx.target_oid is not None}
    out["source_rows"] = exact_count(cur, ctx.source_schema, ctx.source_name) if ctx.source_oid else None
    out["target_rows"] = exact_count(cur, ctx.target_schema, ctx.target_name) if ctx.target_oid else 0
    return out


def plan(cur, ctx):
    """Read-only: what the merge would do (works inside a READ ONLY transaction)."""
    denied = privilege_problems(cur, ctx.source_oid, ctx.source) if ctx.source_oid is not None else []
    if denied:
        return {"source": ctx.source, "target": ctx.target, "policy": ctx.policy, "action": "refused",
                "reason": denied[0]["description"], "problems": [], "source_dependents": denied,
                "source_exists": True, "target_exists": ctx.target_oid is not None, "backup_objects": []}
    state = _summary_counts(cur, ctx)
    # Quoted, so that names with dots or quotes parse back exactly (backup covers, guard).
    covers = [qualified(ctx.source_schema, ctx.source_name)] if ctx.source_oid is not None else []
    if ctx.target_oid is not None:
        covers.append(qualified(ctx.target_schema, ctx.target_name))
    result = dict(state, source=ctx.source, target=ctx.target, policy=ctx.policy, backup_objects=covers,
                  mapping=[{"source": s, "target": t, "cast": ctx.tgt_by_name.get(t, {}).get("type")
                            if s in ctx.src_by_name and t in ctx.tgt_by_name and ctx.differs(s, t) else None}
                           for s, t in ctx.pairs])
    if ctx.source_oid is None:
        record = quarantine_record(cur, ctx.source_schema, ctx.source_name)
        if record and ctx.target_oid is not None:
            result.update(action="converged", reason="source already merged and retired to {0}".format(
                qualified(record["quarantine_schema"], record["quarantine_name"])), quarantine=record)
            return result
        raise MergeError("merge source {0} does not exist and was never retired by pgsafe: check the plan's "
                         "source name".format(ctx.source))
    mapping_problems = ctx.mapping_problems()
    if mapping_problems:
        result.update(action="refused", reason="column mapping: " + "; ".join(mapping_problems),
                      mapping_problems=mapping_problems, problems=[])
        return result
    problems = precheck(cur, ctx)
    identical, differing = collisions(cur, ctx)
    blockers = [d for d in dependencies(cur, ctx.source_schema, ctx.source_name) if d["blocking"]]
    if ctx.target_oid is not None:
        cur.execute("SELECT has_table_privilege(%s, 'INSERT, SELECT')", (ctx.target_oid,))
        if not cur.fetchone()[0]:
            blockers.append({"description": "the login may not INSERT into / SELECT from {0}".format(ctx.target)})
    else:
        cur.execute("SELECT has_schema_privilege(%s, 'CREATE')", (ctx.target_schema,))
        if not cur.fetchone()[0]:
            blockers.append({"description": "the login may not create {0} (no CREATE on schema {1})".format(
                ctx.target, ctx.target_schema)})
    result.update(problems=problems, identical=identical, differing=differing[:ctx.sample_limit],
                  differing_count=len(differing), create_target=ctx.target_oid is None,
                  target_statements=ctx.target_statements if ctx.target_oid is None else [],
                  source_dependents=blockers,
                  to_insert=state["source_rows"] - identical - len(differing))
    reasons = []
    if problems:
        reasons.append("precheck: " + "; ".join("{0} rows {1} ({2})".format(p["count"], p["message"], p["column"])
                                                for p in problems))
    if differing and ctx.policy == "fail":
        reasons.append("{0} source rows collide with different target rows on {1} (policy fail; use policy "
                       "keep_target to keep the target rows and quarantine the source rows): {2}".format(
                           len(differing), ", ".join(ctx.target_pk),
                           ", ".join(json.dumps(d["pk"], sort_keys=True) for d in differing[:ctx.sample_limit])))
    if blockers:
        reasons.append("the source cannot be retired afterwards, still needed by: " + "; ".join(
            d["description"] for d in blockers))
    if reasons:
        result.update(action="refused", reason=" | ".join(reasons))
    else:
        result.update(action="merge", reason="{0} rows to copy, {1} identical skipped, {2} quarantined; then {3} "
                                             "retired".format(result["to_insert"], identical,
                                                              len(differing), ctx.source))
    return result


def lock_statement(ctx):
    return lock_statements([((ctx.source_schema, ctx.source_name), "SHARE ROW EXCLUSIVE")])[0]


def insert_statement(ctx):
    """The one statement that copies the source rows the target does not hold yet."""
    sql = _sql()
    return sql.SQL("INSERT INTO {0} ({1}) SELECT {2} FROM {3} s WHERE NOT EXISTS "
                   "(SELECT 1 FROM {0} t WHERE {4})").format(
        ctx.target_ref(), sql.SQL(", ").join(sql.Identifier(t) for _s, t in ctx.pairs), ctx.mapped_exprs(),
        ctx.source_ref(), ctx.key_join())


def planned_statements(cur, ctx):
    """What apply runs, in order, as text (read-only); data-dependent parts are named, not listed."""
    out = [lock_statement(ctx).as_string(cur)]
    out += ["-- create the target (search_path {0}): {1}".format(ctx.target_schema, s.strip())
            for s in ctx.target_statements] if ctx.target_oid is None else []
    out.append("-- rows whose key exists in the target with other values: to pgsafe.quarantine_row (policy {0})"
               .format(ctx.policy))
    if ctx.target_oid is not None or not ctx.target_statements:
        out.append(insert_statement(ctx).as_string(cur))
    else:
        out.append("-- INSERT INTO {0} (...) SELECT ... FROM {1}: rendered once the target exists".format(
            ctx.target, ctx.source))
    return out


def apply(cur, ctx, run_id, retention_days=30, retire_source=True):
    """Do the merge in the caller's transaction (the caller commits; on any exception it must roll back)."""
    sql = _sql()
    if ctx.source_oid is None:
        return plan(cur, ctx)
    cur.execute(lock_statement(ctx))
    created = False
    if ctx.target_oid is None:
        cur.execute(sql.SQL("SET LOCAL search_path TO {0}, pg_catalog").format(sql.Identifier(ctx.target_schema)))
        for stmt in ctx.target_statements:
            cur.execute(stmt)
        cur.execute("RESET search_path")
        created = True
        journal(cur, run_id, "table_merge.create_target", "completed", ctx.target,
                {"statements": ctx.target_statements})
    ctx.refresh(cur)
    result = plan(cur, ctx)  # again, under the lock: what is true now is what counts
    result["target_created"] = created
    if result["action"] != "merge":
        raise MergeError("merge {0} -> {1} refused: {2}".format(ctx.source, ctx.target, result["reason"]))
    source_rows = result["source_rows"]
    _identical, differing = collisions(cur, ctx)
    if differing:
        keys = [d["pk"] for d in differing]
        quarantined_keys = ctx.keys_in(cur, keys, "s")
        write_rows(cur, run_id, (ctx.source_schema, ctx.source_name), ctx.source_key_columns(),
                   ctx.keys_in(cur, keys, "t"), (),
                   "merge into {0}: key exists there with different values (policy keep_target)".format(ctx.target),
                   move=False)
    else:
        quarantined_keys = sql.SQL("false")
    cur.execute(insert_statement(ctx))
    inserted = cur.rowcount
    evidence = proof(cur, ctx, quarantined_keys, run_id)
    late = exact_count(cur, ctx.source_schema, ctx.source_name)
    evidence["source_rows_at_end"] = late
    if late != source_rows:
        raise MergeError("rows arrived in {0} during the merge ({1} -> {2}): nothing was changed; re-run".format(
            ctx.source, source_rows, late))
    if not evidence["ok"]:
        raise MergeError("merge proof failed for {0} -> {1}: {2}; nothing was changed".format(
            ctx.source, ctx.target, json.dumps(evidence, sort_keys=True)))
    if inserted + result["identical"] + len(differing) != source_rows:
        raise MergeError("merge accounting does not add up for {0}: {1} inserted + {2} identical + {3} "
                         "quarantined != {4} source rows; nothing was changed".format(
                             ctx.source, inserted, result["identical"], len(differing), source_rows))
    if not created and inserted:
        # The target existed and gained rows: the run's reconciliation accepts exactly these (their content is
        # proven by the EXCEPT both ways and the hashes above).
        from ansible.module_utils.pgsafe_fingerprint import record_explanation
        from ansible.module_utils.pgsafe_identifiers import table_key
        record_explanation(cur, run_id, {"kind": "merge", "table": table_key(ctx.target_schema, ctx.target_name),
                                         "rows": inserted, "from": ctx.source})
    journal(cur, run_id, "table_merge", "completed", ctx.source,
            {"target": ctx.target, "inserted": inserted, "identical": result["identical"],
             "quarantined": len(differing), "proof": evidence, "mapping": result["mapping"]})
    retired = None
    if retire_source:
        retired = retire_table(cur, run_id, {"schema": ctx.source_schema, "name": ctx.source_name,
                                             "expected_rows": source_rows},
                               retention_days=retention_days, reason="merged into {0}".format(ctx.target),
                               details={"merged_into": ctx.target, "proof": evidence})
        if retired["action"] != "retired":
            raise MergeError("merged source {0} could not be retired ({1}): nothing was changed".format(
                ctx.source, retired["reason"]))
    result.update(action="merged", inserted=inserted, quarantined=len(differing), proof=evidence,
                  retired=retired, reason="{0} rows copied, {1} identical skipped, {2} quarantined; proof ok "
                                          "(sha {3}); source moved to {4}".format(
                                              inserted, result["identical"], len(differing),
                                              evidence["source_sha"],
                                              retired["quarantine_table"] if retired else "(kept)"))
    return result
