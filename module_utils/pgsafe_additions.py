# -*- coding: utf-8 -*-
"""Additive schema steps (``schema_additions``: add_column, create_index, set_not_null, set_default, drop_default),
each done the way that keeps writers running (applied by module_utils/pgsafe_additions_apply.py); see
library/pgsafe_schema_additions.py for the choices (volatile defaults refused on tables with rows, CONCURRENTLY,
NOT VALID + VALIDATE before SET NOT NULL).

Each statement runs in a transaction of its own (autocommit for CONCURRENTLY): no ACCESS EXCLUSIVE lock is held across
a scan; plans are state-aware, so a re-run resumes.  Identifiers go through ``psycopg2.sql.Identifier`` (``render``
prints them without a connection, as psycopg2 quotes them); ``default`` / ``where`` pass ``validate_expression`` first.
"""
from __future__ import annotations

import json
import re

from ansible.module_utils.pgsafe_hazards import checked
from ansible.module_utils.pgsafe_identifiers import NAMEDATALEN, IdentifierError, derived_name, quote_ident, split_qualified
from ansible.module_utils.pgsafe_plan import json_sha256
from ansible.module_utils.pgsafe_typechange_parse import TypeChangeError, canonical_type_text, validate_expression

try:  # the pure parts (normalisation, rendering) are importable without a server
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = None
    sql = None

SAMPLE_LIMIT, GROUP_SAMPLE = 20, 5  # offending rows reported; duplicate groups sampled
INDEX_METHODS = ("btree", "hash", "gist", "gin", "brin", "spgist")
ACCESS_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE = "ACCESS EXCLUSIVE", "SHARE UPDATE EXCLUSIVE"
NOT_NULL_SUFFIX = "pgsafe_set_nn"
JOURNAL_STEP = "schema_additions"

# kind -> (required keys after kind, optional keys)
KINDS = {
    "add_column": (("table", "column", "type"), ("default", "not_null")),
    "create_index": (("table", "name", "columns"), ("unique", "method", "where")),
    "set_not_null": (("table", "column"), ()),
    "set_default": (("table", "column", "default"), ()),
    "drop_default": (("table", "column"), ()),
}
_OPTIONAL_DEFAULTS = {"default": None, "not_null": False, "unique": False, "method": "btree", "where": None}
_CONFLICT_GROUP = {"set_default": "default", "drop_default": "default"}
_INDEX_FACTS = ("relkind", "own", "valid", "unique", "method", "predicate", "columns")
_SERIAL = ("serial", "bigserial", "smallserial", "serial2", "serial4", "serial8")


class AdditionError(ValueError):
    """An item cannot be planned or applied; the message names the item or object and the fix."""

    def __init__(self, msg, executed=None):
        super().__init__(msg)
        self.executed = list(executed or [])


# --------------------------------------------------------------------------- normalisation (pure)
def _name(what, value):
    if not isinstance(value, str) or not value:
        raise AdditionError("{0}: must be a non-empty string (a name exactly as in the catalog), got {1!r}".format(what, value))
    if "\x00" in value or len(value.encode("utf-8")) >= NAMEDATALEN:
        raise AdditionError("{0}: {1!r} is longer than {2} bytes or contains a NUL byte: the server would truncate "
                            "it; use a shorter name".format(what, value, NAMEDATALEN - 1))
    return value


def _type(what, value):
    if not isinstance(value, str):
        raise AdditionError("{0}: must be a type name string such as text, uuid or varchar(255), got {1!r}".format(what, value))
    try:
        canonical = canonical_type_text(value)
    except TypeChangeError as exc:
        raise AdditionError("{0}: {1}".format(what, exc)) from None
    if canonical in _SERIAL:
        raise AdditionError("{0}: {1} adds a volatile nextval() default (a table rewrite): add an integer column, "
                            "then set_default nextval(...) for new rows and backfill the existing ones".format(what, value))
    return canonical


def _expr(what, value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise AdditionError("{0}: must be an SQL expression string (e.g. \"'pending'\"), got {1!r}".format(what, value))
    try:
        return validate_expression(value, what)
    except TypeChangeError as exc:
        raise AdditionError(str(exc)) from None


def _bool(what, value):
    if isinstance(value, bool):
        return value
    raise AdditionError("{0}: must be true or false, got {1!r}".format(what, value))


def _method(what, value):
    if isinstance(value, str) and value.lower() in INDEX_METHODS:
        return value.lower()
    raise AdditionError("{0}: unknown index method {1!r}: use one of {2}".format(what, value, ", ".join(INDEX_METHODS)))


def _columns(what, value):
    if not isinstance(value, list) or not value:
        raise AdditionError("{0}: must be a non-empty list of column names, got {1!r}".format(what, value))
    out = [_name("{0}[{1}]".format(what, i), c) for i, c in enumerate(value)]
    if len(set(out)) != len(out):
        raise AdditionError("{0}: a column is listed twice in {1!r}: list each once".format(what, value))
    return out


_CHECKS = {"column": _name, "name": _name, "type": _type, "default": _expr, "where": _expr, "not_null": _bool,
           "unique": _bool, "method": _method, "columns": _columns}


def _normalise_item(i, raw, default_schema):
    where = "schema_additions[{0}]".format(i)
    if not isinstance(raw, dict):
        raise AdditionError("{0}: must be a mapping with a kind (e.g. {{kind: add_column, table: t, column: c, "
                            "type: text}}), got {1!r}".format(where, raw))
    kind = raw.get("kind")
    if kind not in KINDS:
        raise AdditionError("{0}.kind: unknown kind {1!r}: use one of {2}".format(where, kind, ", ".join(KINDS)))
    required, optional = KINDS[kind]
    allowed = ("kind",) + required + optional
    for key in raw:
        if key not in allowed:
            raise AdditionError("{0}.{1}: unknown key for kind {2}: use only {3}".format(where, key, kind, ", ".join(allowed)))
    for key in required:
        if raw.get(key) is None:
            raise AdditionError("{0}.{1}: missing: {2} needs {3}".format(where, key, kind, ", ".join(required)))
    try:
        schema, table = split_qualified(raw["table"], default_schema)
    except IdentifierError as exc:
        raise AdditionError("{0}.table: {1}".format(where, exc)) from None
    item = {"kind": kind, "schema": _name(where + ".table", schema), "table": _name(where + ".table", table)}
    for key in required[1:] + optional:
        item[key] = _CHECKS[key]("{0}.{1}".format(where, key), raw.get(key, _OPTIONAL_DEFAULTS.get(key)))
    if kind == "create_index" and item["unique"] and item["method"] != "btree":
        raise AdditionError("{0}.unique: only btree indexes can be unique: drop method or unique".format(where))
    return item


def normalise_additions(items, default_schema="public"):
    """Validated, normalised items (schema and table split, type canonical, optional keys filled)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise AdditionError("schema_additions must be a list of items ({{kind: ..., table: ...}}), got {0!r}".format(items))
    out, seen = [], {}
    for i, raw in enumerate(items):
        item = _normalise_item(i, raw, default_schema)
        key = (_CONFLICT_GROUP.get(item["kind"], item["kind"]), object_of(item))
        if key in seen:
            raise AdditionError("schema_additions[{0}]: {1} of {2} is already given by schema_additions[{3}]: keep "
                                "one of them".format(i, item["kind"], key[1], seen[key]))
        seen[key] = i
        out.append(item)
    return out


# --------------------------------------------------------------------------- names and SQL text (pure)
def object_name(*parts):
    """schema.table[.column] for reports and keys; a part holding a dot or a quote is quoted."""
    return ".".join(quote_ident(p) if ("." in p or '"' in p) else p for p in parts)


def object_of(item):
    if item["kind"] == "create_index":
        return object_name(item["schema"], item["name"])
    return object_name(item["schema"], item["table"], item["column"])


def not_null_constraint_name(item):
    return derived_name(item["column"], suffix=NOT_NULL_SUFFIX)


def render(part):
    """SQL text of a psycopg2.sql composable without a connection (identifiers quoted as psycopg2 does)."""
    if isinstance(part, sql.Composed):
        return "".join(render(p) for p in part.seq)
    if isinstance(part, sql.Identifier):
        return ".".join(quote_ident(s) for s in part.strings)
    if isinstance(part, sql.SQL):
        return part.string
    raise TypeError("cannot render {0!r} without a connection".format(part))


def _stmt(composed, lock, transactional=True):
    return {"sql": render(composed), "lock_level": lock, "transactional": transactional}


def _tbl(item):
    return sql.Identifier(item["schema"], item["table"])


def _alter_column(item, action):
    return sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} ").format(_tbl(item), sql.Identifier(item["column"])) + action


def add_column_statements(item):
    q = sql.SQL("ALTER TABLE {0} ADD COLUMN {1} {2}").format(_tbl(item), sql.Identifier(item["column"]), sql.SQL(item["type"]))
    if item["default"] is not None:
        q += sql.SQL(" DEFAULT ") + sql.SQL(item["default"])
    if item["not_null"]:
        q += sql.SQL(" NOT NULL")
    return [_stmt(q, ACCESS_EXCLUSIVE)]


def create_index_statements(item, index_state=None):
    """index_state: None (absent), 'invalid' (left by an interrupted build: dropped first) or 'valid'."""
    if index_state == "valid":
        return []
    out = []
    if index_state == "invalid":
        out.append(_stmt(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(
            sql.Identifier(item["schema"], item["name"])), SHARE_UPDATE_EXCLUSIVE, False))
    q = sql.SQL("CREATE {0}INDEX CONCURRENTLY {1} ON {2} USING {3} ({4})").format(
        sql.SQL("UNIQUE " if item["unique"] else ""), sql.Identifier(item["name"]), _tbl(item), sql.SQL(item["method"]),
        sql.SQL(", ").join(sql.Identifier(c) for c in item["columns"]))
    if item["where"] is not None:
        q += sql.SQL(" WHERE ") + sql.SQL(item["where"])
    out.append(_stmt(q, SHARE_UPDATE_EXCLUSIVE, False))
    return out


def set_not_null_statements(item, column_not_null=False, constraint=None):
    """constraint: None (absent), 'not_valid' or 'valid' (our derived check, left by an earlier run)."""
    t, c, k = _tbl(item), sql.Identifier(item["column"]), sql.Identifier(not_null_constraint_name(item))
    drop = _stmt(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(t, k), ACCESS_EXCLUSIVE)
    if column_not_null:
        return [drop] if constraint else []
    out = []
    if constraint is None:
        out.append(_stmt(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} CHECK ({2} IS NOT NULL) NOT VALID").format(t, k, c),
                         ACCESS_EXCLUSIVE))
    if constraint != "valid":
        out.append(_stmt(sql.SQL("ALTER TABLE {0} VALIDATE CONSTRAINT {1}").format(t, k), SHARE_UPDATE_EXCLUSIVE))
    out.append(_stmt(_alter_column(item, sql.SQL("SET NOT NULL")), ACCESS_EXCLUSIVE))
    return out + [drop]


def default_statements(item, expression):
    """SET DEFAULT expression, or DROP DEFAULT when expression is None."""
    action = sql.SQL("DROP DEFAULT") if expression is None else sql.SQL("SET DEFAULT ") + sql.SQL(expression)
    return [_stmt(_alter_column(item, action), ACCESS_EXCLUSIVE)]


def rollback_statements(item, previous_default=None):
    """SQL that undoes an applied item (previous_default: the default before set_default / drop_default)."""
    kind = item["kind"]
    if kind == "add_column":
        q = sql.SQL("ALTER TABLE {0} DROP COLUMN {1}").format(_tbl(item), sql.Identifier(item["column"]))
    elif kind == "create_index":
        q = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(sql.Identifier(item["schema"], item["name"]))
    elif kind == "set_not_null":
        q = _alter_column(item, sql.SQL("DROP NOT NULL"))
    else:
        return [default_statements(item, previous_default)[0]["sql"]]
    return [render(q)]


def statements_sha256(step):
    """sha256 of the canonical JSON of a step's statements."""
    return json_sha256(step["statements"], ensure_ascii=False)


def objects_sha256(steps):
    """{object: sha256}: the statements of every step on that object, in plan order (one step: statements_sha256)."""
    grouped = {}
    for step in steps:
        grouped.setdefault(step["object"], []).extend(step["statements"])
    return {obj: statements_sha256({"statements": stmts}) for obj, stmts in grouped.items()}


# --------------------------------------------------------------------------- expressions (pure)
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_CAST = re.compile(r"::\s*[a-z_][a-z0-9_]*(?:\s+(?:precision|varying|with|without|time|zone))*"
                   r"(?:\s*\(\s*\d+(?:\s*,\s*\d+)?\s*\))?(?:\s*\[\])*")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_$]*|\"(?:[^\"]|\"\")+\")\s*\(")


def _outside_quotes(expr, fn):
    """Apply fn to the text outside string literals and quoted identifiers."""
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(re.split("(" + _QUOTED.pattern + ")", expr)))


def canonical_expression(expr):
    """Comparable text of an SQL expression: outside quotes lower case, without spaces, casts and parentheses (the
    server prints a stored default as ``'x'::text``, ``(random())::text``, ``(1 + (2 * 3))``)."""
    return _outside_quotes(expr.strip(), lambda t: re.sub(r"\s+", "", _CAST.sub("", t.lower()).replace("(", "").replace(")", "")))


def function_names(expr):
    """Names of the functions an expression calls (outside literals), lower case unless quoted."""
    cleaned = _QUOTED.sub(lambda q: "''" if q.group(0)[0] == "'" else q.group(0), expr)
    return sorted({n[1:-1].replace('""', '"') if n.startswith('"') else n.lower() for n in _CALL.findall(cleaned)})


def expressions_match(declared, stored):
    """Textual match of a declared expression and the server's print of it (see canonical_expression)."""
    if declared is None or stored is None:
        return declared is None and stored is None
    return canonical_expression(declared) == canonical_expression(stored)


# --------------------------------------------------------------------------- decisions (pure: facts -> step)
def _describe_column(col):
    text = col["type"] + ("" if col["default"] is None else " DEFAULT " + col["default"])
    return text + (" NOT NULL" if col["not_null"] else "") + (" (added by an earlier item)" if col.get("pending") else "")


def _describe_index(unique, method, columns, predicate):
    return "{0}index using {1} ({2}){3}".format("UNIQUE " if unique else "", method, ", ".join(c or "<expr>" for c in columns),
                                              "" if predicate is None else " WHERE " + predicate)


def _decide_add_column(item, facts, step):
    col, rows, table, problems = facts["column"], facts["rows"], step["tables"][0], step["precheck"]["problems"]
    step["after"] = _describe_column({"type": item["type"], "default": item["default"], "not_null": item["not_null"]})
    if col is not None:
        step["before"] = _describe_column(col)
        if col["type"] != item["type"]:
            problems.append("{0} exists with type {1}, not {2}: change its type with pgsafe_column_types (role "
                            "schema_fix), then re-run".format(step["object"], col["type"], item["type"]))
        if item["not_null"] and not col["not_null"]:
            problems.append("{0} exists but is nullable: add a set_not_null item for it".format(step["object"]))
        if item["default"] is not None and not facts["default_matches"]:
            problems.append("{0} exists with default {1}, not {2}: add a set_default item for it".format(
                step["object"], col["default"], item["default"]))
        return
    step.update(before="absent", statements=add_column_statements(item), hazards=["access_exclusive_lock"],
                rollback_sql=rollback_statements(item))
    if facts["volatile"] and rows:
        problems.append("{0}: default {1} calls volatile function(s) {2}, so ADD COLUMN would rewrite {3} ({4} rows) "
                        "under ACCESS EXCLUSIVE. Fix: add the column without a default (or with a constant one), add a "
                        "set_default item for new rows, backfill the existing rows in batches, then set_not_null".format(
                            step["object"], item["default"], ", ".join(facts["volatile"]), table, rows))
    elif facts["volatile"]:
        step["hazards"].append("rewrite")  # an empty table: the rewrite is instant
    if item["not_null"] and item["default"] is None and rows:
        problems.append("{0}: NOT NULL without a default on {1}, which has {2} rows: give a default (a constant one is "
                        "catalog only), or add it nullable, backfill, then set_not_null".format(step["object"], table, rows))


def _index_mismatches(item, idx):
    pairs = [("columns", ", ".join(c or "<expr>" for c in idx["columns"]), ", ".join(item["columns"])),
             ("unique", idx["unique"], item["unique"]), ("method", idx["method"], item["method"]),
             ("predicate", idx["predicate"], item["where"])]
    return ["{0} {1} not {2}".format(what, have, want) for what, have, want in pairs
            if (not expressions_match(want, have) if what == "predicate" else have != want)]


def _decide_create_index(item, facts, step):
    idx, problems, table = facts["index"], step["precheck"]["problems"], step["tables"][0]
    missing = [c for c in item["columns"] if c not in facts["columns"]]
    if missing:
        problems.append("{0}: column(s) {1} do not exist on {2}: add them first".format(step["object"], ", ".join(missing),
                                                                                       table))
    if facts["relkind"] == "p":
        problems.append("{0}: {1} is partitioned and CREATE INDEX CONCURRENTLY does not support partitioned tables: "
                        "create the index on each partition".format(step["object"], table))
    state = None
    if idx is not None:
        if idx["relkind"] not in ("i", "I") or not idx["own"]:
            problems.append("{0}: a relation of that name exists that is not an index of {1}: choose another name".format(
                step["object"], table))
            return
        state = "valid" if idx["valid"] else "invalid"
        mismatches = _index_mismatches(item, idx) if idx["valid"] else []
        if mismatches:
            problems.append("{0} exists with another definition ({1}): drop it (DROP INDEX CONCURRENTLY) or choose "
                            "another name".format(step["object"], "; ".join(mismatches)))
    step["before"] = {None: "absent", "invalid": "INVALID (left by an interrupted build)"}.get(state) or \
        _describe_index(idx["unique"], idx["method"], idx["columns"], idx["predicate"])
    step["after"] = _describe_index(item["unique"], item["method"], item["columns"], item["where"])
    step["statements"] = create_index_statements(item, state)
    if step["statements"]:
        step.update(hazards=["index_build", "non_transactional", "table_scan"], rollback_sql=rollback_statements(item))


def _decide_set_not_null(item, facts, step):
    col, con, state = facts["column"], facts["constraint"], None
    if con is not None and not con["check_ok"]:
        step["precheck"]["problems"].append("{0}: a constraint named {1} exists on {2} with another definition: rename or "
                                            "drop it".format(step["object"], not_null_constraint_name(item), step["tables"][0]))
    elif con is not None:
        state = "valid" if con["validated"] else "not_valid"
    step["before"] = ("NOT NULL" if col["not_null"] else "nullable") + (
        "" if state is None else " (check {0} left {1})".format(not_null_constraint_name(item), state.replace("_", " ")))
    step["after"] = "NOT NULL"
    step["statements"] = set_not_null_statements(item, col["not_null"], state)
    if step["statements"]:
        step["hazards"] = ["access_exclusive_lock"] + (
            ["table_scan"] if any(" VALIDATE CONSTRAINT " in s["sql"] for s in step["statements"]) else [])
    if not col["not_null"]:
        step["rollback_sql"] = rollback_statements(item)


def _decide_default(item, facts, step):
    col = facts["column"]
    if col["identity"] or col["generated"]:
        step["precheck"]["problems"].append("{0} is an identity or generated column: its default cannot be {1}".format(
            step["object"], "set" if item["kind"] == "set_default" else "dropped"))
    wanted = item.get("default")
    step["before"] = "no default" if col["default"] is None else "DEFAULT " + col["default"]
    step["after"] = "no default" if wanted is None else "DEFAULT " + wanted
    same = col["default"] is None if wanted is None else facts["default_matches"]
    if not same:
        step.update(statements=default_statements(item, wanted), hazards=["access_exclusive_lock"],
                    rollback_sql=rollback_statements(item, col["default"]))


_DECIDERS = {"add_column": _decide_add_column, "create_index": _decide_create_index,
             "set_not_null": _decide_set_not_null, "set_default": _decide_default, "drop_default": _decide_default}


def decide(item, facts):
    """The step of a normalised item from its catalog facts (pure; see gather_facts for the facts' shape)."""
    table = object_name(item["schema"], item["table"])
    step = {"kind": item["kind"], "object": object_of(item), "converged": False, "statements": [], "hazards": [],
            "precheck": {"ok": True, "problems": [], "offending_rows": [], "rows": facts["rows"]},
            "rollback_sql": [], "tables": [table], "before": "", "after": "", "item": item}
    problems = step["precheck"]["problems"]
    if not facts["table"]:
        what = "does not exist" if facts["relkind"] is None else "is not a table (relkind {0})".format(facts["relkind"])
        problems.append("{0}: table {1} {2}: create it first (additions only add to existing tables)".format(
            step["object"], table, what))
    elif item["kind"] not in ("add_column", "create_index") and facts["column"] is None:
        problems.append("{0}: column {1} does not exist on {2}: add it with an add_column item first".format(
            step["object"], item["column"], table))
    else:
        _DECIDERS[item["kind"]](item, facts, step)
    step["hazards"] = checked(step["hazards"]) if step["statements"] else []
    step["converged"] = not step["statements"] and not problems
    step["precheck"]["ok"] = not problems
    return step


# --------------------------------------------------------------------------- catalog facts and prechecks (read only)
def _guarded(cur, query):
    """(True, rows) or (False, error text): a failing precheck query does not abort the plan's transaction."""
    cur.execute("SAVEPOINT pgsafe_additions")
    try:
        cur.execute(query)
        rows = cur.fetchall()
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_additions")
        return False, " ".join(str(exc).split())
    cur.execute("RELEASE SAVEPOINT pgsafe_additions")
    return True, rows


def volatile_functions(cur, expr):
    """Functions called by expr that the catalog marks volatile (any overload: conservative)."""
    names = function_names(expr or "")
    if not names:
        return []
    cur.execute("SELECT DISTINCT proname::text FROM pg_proc WHERE proname = ANY(%s::name[]) AND provolatile = 'v' ORDER BY 1",
                (names,))
    return [r[0] for r in cur.fetchall()]


def same_default(cur, declared, stored, column_type):
    """Does the stored default match the declared one?  Text first; else equal values of two non-volatile ones."""
    if expressions_match(declared, stored):
        return True
    if declared is None or stored is None or volatile_functions(cur, declared) or volatile_functions(cur, stored):
        return False
    ok, rows = _guarded(cur, sql.SQL("SELECT CAST(({0}) AS {2}) IS NOT DISTINCT FROM CAST(({1}) AS {2})").format(
        sql.SQL(declared), sql.SQL(stored), sql.SQL(column_type)))
    return bool(ok and rows[0][0])


def _table_columns(cur, oid):
    """({name: column facts}, [primary key columns])."""
    cur.execute("SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), "
                "a.attidentity::text, a.attgenerated::text, k.o FROM pg_attribute a LEFT JOIN pg_attrdef d ON "
                "d.adrelid = a.attrelid AND d.adnum = a.attnum LEFT JOIN (SELECT n, o FROM pg_index i, unnest(i.indkey::int2[]) "
                "WITH ORDINALITY k(n, o) WHERE i.indrelid = %s AND i.indisprimary) k ON k.n = a.attnum "
                "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY k.o, a.attnum", (oid, oid))
    rows = cur.fetchall()
    return ({r[0]: {"type": r[1], "not_null": r[2], "default": r[3], "identity": r[4] or "", "generated": r[5] or "",
                    "pending": False} for r in rows}, [r[0] for r in rows if r[6] is not None])


def _index_facts(cur, item, table_oid):
    cur.execute("SELECT c.relkind::text, i.indrelid = %s, i.indisvalid, i.indisunique, am.amname::text, "
                "pg_get_expr(i.indpred, i.indrelid), ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH "
                "ORDINALITY k(n, o) LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
                "WHERE k.o <= i.indnkeyatts ORDER BY k.o) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid "
                "LEFT JOIN pg_am am ON am.oid = c.relam WHERE n.nspname = %s AND c.relname = %s",
                (table_oid, item["schema"], item["name"]))
    row = cur.fetchone()
    return None if row is None else dict(zip(_INDEX_FACTS, row, strict=True))


def _constraint_facts(cur, table_oid, item):
    cur.execute("SELECT convalidated, contype = 'c' AND pg_get_constraintdef(oid) IN "
                "(format('CHECK ((%%I IS NOT NULL))', %s::text), format('CHECK ((%%I IS NOT NULL)) NOT VALID', %s::text)) "
                "FROM pg_constraint WHERE conrelid = %s AND conname = %s",
                (item["column"], item["column"], table_oid, not_null_constraint_name(item)))
    row = cur.fetchone()
    return None if row is None else {"validated": row[0], "check_ok": row[1]}


def gather_facts(cur, item, pending=None, counts=None):
    """Catalog facts of one item; ``pending`` {(schema, table, column): add_column item} planned before it."""
    facts = dict(table=False, relkind=None, oid=None, rows=None, columns={}, pk=[], column=None, volatile=[],
                 default_matches=None, index=None, constraint=None)
    cur.execute("SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", (item["schema"], item["table"]))
    rel = cur.fetchone()
    if rel is None or rel[1] not in ("r", "p"):
        facts["relkind"] = rel[1] if rel else None
        return facts
    key, counts = (item["schema"], item["table"]), ({} if counts is None else counts)
    if key not in counts:
        cur.execute(sql.SQL("SELECT count(*) FROM {0}").format(_tbl(item)))
        counts[key] = cur.fetchone()[0]
    columns, pk = _table_columns(cur, rel[0])
    facts.update(table=True, oid=rel[0], relkind=rel[1], rows=counts[key], columns=columns, pk=pk)
    for (schema, table, column), added in (pending or {}).items():
        if (schema, table) == key and column not in facts["columns"]:
            facts["columns"][column] = {"type": added["type"], "not_null": added["not_null"], "default": added["default"],
                                        "identity": "", "generated": "", "pending": True}
    col = facts["column"] = facts["columns"].get(item.get("column"))
    if item["kind"] == "add_column" and item["default"] is not None:
        if col is None:
            facts["volatile"] = volatile_functions(cur, item["default"])
        else:
            facts["default_matches"] = same_default(cur, item["default"], col["default"], col["type"])
    elif item["kind"] == "set_default" and col is not None:
        facts["default_matches"] = (expressions_match(item["default"], col["default"]) if col["pending"]
                                    else same_default(cur, item["default"], col["default"], col["type"]))
    elif item["kind"] == "create_index":
        facts["index"] = _index_facts(cur, item, rel[0])
    elif item["kind"] == "set_not_null" and col is not None and not col["pending"]:
        facts["constraint"] = _constraint_facts(cur, rel[0], item)
    return facts


def _pk_json(facts, alias=None):
    """json of a row's primary key (its ctid when the table has none)."""
    cols = facts["pk"] or ["ctid"]
    return sql.SQL("json_build_object({0})").format(sql.SQL(", ").join(sql.SQL("{0}, {1}{2}").format(
        sql.Literal(c), sql.Identifier(*([alias, c] if alias else [c])), sql.SQL("" if facts["pk"] else "::text"))
        for c in cols))


def _null_rows(cur, item, facts, step):
    col, con, precheck = facts["column"], facts["constraint"], step["precheck"]
    if col["not_null"] or (con and con["check_ok"] and con["validated"]) or (col["pending"] and col["default"] is not None):
        return
    cond = sql.SQL("true") if col["pending"] else sql.SQL("{0} IS NULL").format(sql.Identifier(item["column"]))
    ok, rows = _guarded(cur, sql.SQL("SELECT count(*) FROM {0} WHERE {1}").format(_tbl(item), cond))
    if ok and rows[0][0]:
        ok, sample = _guarded(cur, sql.SQL("SELECT {0} FROM {1} WHERE {2} LIMIT {3}").format(
            _pk_json(facts), _tbl(item), cond, sql.Literal(SAMPLE_LIMIT)))
        precheck["offending_rows"] = [{"pk": r[0]} for r in (sample if ok else [])]
        why = ("the column is added by an earlier item without a default, so every existing row would be NULL"
               if col["pending"] else "fill them (UPDATE in batches), then re-run")
        precheck["problems"].append("{0}: {1} row(s) of {2} have NULL in {3}, e.g. pk {4}: {5}".format(
            step["object"], rows[0][0], step["tables"][0], item["column"],
            ", ".join(json.dumps(r["pk"], sort_keys=True, default=str) for r in precheck["offending_rows"][:3]), why))
    elif not ok:
        precheck["problems"].append("{0}: the NULL count failed: {1}".format(step["object"], rows))


def _duplicates(cur, item, facts, step):
    cols, precheck = facts["columns"], step["precheck"]
    pending = [c for c in item["columns"] if cols[c]["pending"]]
    if any(cols[c]["default"] is None for c in pending):
        return  # NULL keys never collide in a unique index
    existing = [c for c in item["columns"] if c not in pending]
    conds = [sql.SQL("{0} IS NOT NULL").format(sql.Identifier(c)) for c in existing]
    if item["where"] is not None:
        conds.append(sql.SQL("(") + sql.SQL(item["where"]) + sql.SQL(")"))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
    group = sql.SQL(" GROUP BY ") + sql.SQL(", ").join(map(sql.Identifier, existing)) if existing else sql.SQL("")
    ok, rows = _guarded(cur, sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {0}{1}{2} HAVING count(*) > 1) g").format(
        _tbl(item), where, group))
    if not ok or not rows[0][0]:
        precheck["problems"] += [] if ok else ["{0}: the duplicate check failed (check where): {1}".format(step["object"], rows)]
        return
    key = sql.SQL("json_build_object({0})").format(sql.SQL(", ").join(
        [sql.SQL("{0}, {1}").format(sql.Literal(c), sql.Identifier("r", c)) for c in existing]
        + [sql.SQL("{0}, {1}").format(sql.Literal(c), sql.Literal("DEFAULT " + cols[c]["default"])) for c in pending]))
    on = sql.SQL(" AND ").join(sql.SQL("r.{0} = g.{0}").format(sql.Identifier(c)) for c in existing) or sql.SQL("true")
    ok, sample = _guarded(cur, sql.SQL(
        "WITH g AS (SELECT {0}count(*) AS pgsafe_n FROM {1}{2}{3} HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT {4}) "
        "SELECT {5}, g.pgsafe_n, {6} FROM (SELECT * FROM {1}{2}) r JOIN g ON {7} ORDER BY g.pgsafe_n DESC LIMIT {8}").format(
        sql.SQL("").join(sql.SQL("{0}, ").format(sql.Identifier(c)) for c in existing), _tbl(item), where, group,
        sql.Literal(GROUP_SAMPLE), key, _pk_json(facts, "r"), on, sql.Literal(SAMPLE_LIMIT)))
    precheck["offending_rows"] = [{"pk": r[2], "key": r[0], "duplicates": r[1]} for r in (sample if ok else [])]
    examples = list(dict.fromkeys("{0} x{1}".format(json.dumps(r["key"], sort_keys=True, default=str), r["duplicates"])
                                  for r in precheck["offending_rows"]))
    precheck["problems"].append("{0}: {1} duplicate key group(s) on ({2}) in {3}, e.g. {4}: a UNIQUE index cannot be "
                                "built; remove the duplicates (or make the index non-unique), then re-run".format(
                                    step["object"], rows[0][0], ", ".join(item["columns"]), step["tables"][0],
                                    "; ".join(examples[:GROUP_SAMPLE])))


def plan_additions(cur, items, default_schema="public"):
    """One step per item (read only: works inside SET TRANSACTION READ ONLY; needs a transaction, not autocommit).

    Items are raw (normalised here) or normalise_additions() output.  A column added by an earlier item counts as
    present for the later ones (its type, default and nullability as declared).
    """
    pending, counts, steps = {}, {}, []
    if not (items and all(isinstance(i, dict) and "schema" in i for i in items)):
        items = normalise_additions(items, default_schema)
    for position, item in enumerate(items):
        facts = gather_facts(cur, item, pending, counts)
        step = decide(item, facts)
        if step["statements"] and item["kind"] == "set_not_null":
            _null_rows(cur, item, facts, step)
        elif step["statements"] and item["kind"] == "create_index" and item["unique"] and \
                all(c in facts["columns"] for c in item["columns"]):
            _duplicates(cur, item, facts, step)
        step["precheck"]["ok"] = not step["precheck"]["problems"]
        step["converged"] = not step["statements"] and step["precheck"]["ok"]
        step["position"] = position
        step["sha256"] = statements_sha256(step)
        if item["kind"] == "add_column" and step["statements"]:
            pending[(item["schema"], item["table"], item["column"])] = item
        steps.append(step)
    return steps
