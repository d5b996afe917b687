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

from ansible.module_utils.pgsafe_identifiers import qualified, split_qualified
from ansible.module_utils.pgsafe_meta import journal
from ansible.module_utils.pgsafe_retire import (dependencies, exact_count, privilege_problems, quarantine_record,
                                                retire_table, table_oid)

POLICIES = ("fail", "keep_target")
_CONSTRAINT_WORDS = ("CONSTRAINT", "PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "EXCLUDE", "LIKE")
_COLUMN_STOP_WORDS = ("NOT", "NULL", "DEFAULT", "CONSTRAINT", "PRIMARY", "REFERENCES", "UNIQUE", "CHECK",
                      "COLLATE", "GENERATED")


class MergeError(Exception):
    """The merge cannot go ahead; the message names the table/column/rows and the fix."""


def _sql():
    from psycopg2 import sql
    return sql


# --------------------------------------------------------------------------- DDL parsing (pure)
def split_statements(text):
    """Split SQL text on top-level semicolons (quotes, dollar quotes and comments respected)."""
    out, buf, i, n = [], [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j == -1 else j + 1
            continue
        if ch == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j == -1 else j + 2
            continue
        if ch in ("'", '"'):
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            buf.append(text[i:j + 1])
            i = j + 1
            continue
        if ch == "$":
            m = re.match(r"\$[A-Za-z_]*\$", text[i:])
            if m:
                tag = m.group(0)
                j = text.find(tag, i + len(tag))
                j = n if j == -1 else j + len(tag)
                buf.append(text[i:j])
                i = j
                continue
        if ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    stmt = "".join(buf).strip()
    if stmt:
        out.append(stmt)
    return out


def _read_identifier(text, i):
    """(name, next index) of an identifier at ``text[i]`` (quoted or bare; bare folds to lower case)."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == '"':
        j, buf = i + 1, []
        while j < len(text):
            if text[j] == '"':
                if j + 1 < len(text) and text[j + 1] == '"':
                    buf.append('"')
                    j += 2
                    continue
                return "".join(buf), j + 1
            buf.append(text[j])
            j += 1
        raise MergeError("unterminated quoted identifier in {0!r}".format(text[:80]))
    m = re.match(r"[A-Za-z_][A-Za-z0-9_$]*", text[i:])
    if not m:
        raise MergeError("expected an identifier at {0!r}".format(text[i:i + 40]))
    return m.group(0).lower(), i + m.end()


def _read_qualified(text, i):
    first, i = _read_identifier(text, i)
    if i < len(text) and text[i] == ".":
        second, i = _read_identifier(text, i + 1)
        return (first, second), i
    return (None, first), i


def _split_top_level(body):
    parts, depth, buf, quote = [], 0, [], None
    for ch in body:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    if "".join(buf).strip():
        parts.append("".join(buf).strip())
    return parts


def _ident_list(text):
    return [_read_identifier(part, 0)[0] for part in _split_top_level(text)]


def statements_for_table(ddl_text, table):
    """The CREATE TABLE, ALTER TABLE ... ADD CONSTRAINT, CREATE INDEX and COMMENT statements of ``table`` in a DDL
    file, in file order (tools like drizzle-kit add foreign keys apart, after every CREATE TABLE)."""
    wanted = []
    for stmt in split_statements(ddl_text):
        head = re.sub(r"\s+", " ", stmt[:200]).upper()
        if head.startswith("ALTER TABLE"):
            m = re.match(r"(?is)ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?", stmt)
            (_schema, name), j = _read_qualified(stmt, m.end())
            if name == table and re.match(r"(?is)\s*ADD\s+(CONSTRAINT\s|PRIMARY\s|UNIQUE\s|FOREIGN\s|CHECK\s)",
                                          stmt[j:]):
                wanted.append(stmt)
        elif head.startswith("CREATE TABLE"):
            m = re.match(r"(?is)CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?", stmt)
            (_schema, name), _ = _read_qualified(stmt, m.end())
            if name == table:
                wanted.append(stmt)
        elif head.startswith("CREATE INDEX") or head.startswith("CREATE UNIQUE INDEX"):
            m = re.search(r"(?is)\sON\s+(ONLY\s+)?", stmt)
            if m:
                (_schema, name), _ = _read_qualified(stmt, m.end())
                if name == table:
                    wanted.append(stmt)
        elif head.startswith("COMMENT ON COLUMN") or head.startswith("COMMENT ON TABLE"):
            m = re.match(r"(?is)COMMENT\s+ON\s+(COLUMN|TABLE)\s+", stmt)
            (first, second), _ = _read_qualified(stmt, m.end())
            if table in (first, second):
                wanted.append(stmt)
    if not wanted or not wanted[0].upper().startswith("CREATE TABLE"):
        raise MergeError("the reference DDL has no CREATE TABLE for {0}: give target_definition the statement, "
                         "or fix the reference file".format(table))
    return wanted


def _parse_foreign_key(rest):
    """{columns, ref_schema, ref_table, ref_columns} of ``FOREIGN KEY (...) REFERENCES t (...) ...``."""
    cols = _ident_list(rest[rest.index("(") + 1:rest.index(")")])
    k = re.search(r"(?i)REFERENCES\s+", rest)
    (ref_schema, ref_table), j = _read_qualified(rest, k.end())
    tail = rest[j:]
    ref_cols = _ident_list(tail[tail.index("(") + 1:tail.index(")")]) if "(" in tail else []
    return {"columns": cols, "ref_schema": ref_schema, "ref_table": ref_table, "ref_columns": ref_cols}


def added_foreign_keys(statements):
    """Foreign keys added by ``ALTER TABLE ... ADD [CONSTRAINT name] FOREIGN KEY`` statements."""
    fks = []
    for stmt in statements:
        m = re.search(r"(?is)\bADD\s+(CONSTRAINT\s+)?", stmt)
        if not stmt.upper().lstrip().startswith("ALTER TABLE") or not m:
            continue
        rest = stmt[m.end():]
        if m.group(1):
            _cname, j = _read_identifier(rest, 0)
            rest = rest[j:].strip()
        if rest.upper().startswith("FOREIGN KEY"):
            fks.append(_parse_foreign_key(rest))
    return fks


def parse_create_table(stmt):
    """Columns, primary key and foreign keys of a CREATE TABLE statement (what the precheck needs)."""
    m = re.match(r"(?is)CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?", stmt)
    if not m:
        raise MergeError("not a CREATE TABLE statement: {0!r}".format(stmt[:80]))
    _name, i = _read_qualified(stmt, m.end())
    start, end = stmt.index("(", i), stmt.rindex(")")
    columns, pk, fks = [], [], []
    for item in _split_top_level(stmt[start + 1:end]):
        words = item.split()
        first = words[0].upper() if words else ""
        if first in _CONSTRAINT_WORDS:
            rest = item
            if first == "CONSTRAINT":
                _cname, j = _read_identifier(item, len("CONSTRAINT"))
                rest = item[j:].strip()
            up = rest.upper()
            if up.startswith("PRIMARY KEY"):
                pk = _ident_list(rest[rest.index("(") + 1:rest.index(")")])
            elif up.startswith("FOREIGN KEY"):
                fks.append(_parse_foreign_key(rest))
            continue
        name, j = _read_identifier(item, 0)
        tokens = re.findall(r'"[^"]*"|\([^)]*\)|[^\s(]+', item[j:])
        type_tokens = []
        for tok in tokens:
            if tok.upper() in _COLUMN_STOP_WORDS:
                break
            type_tokens.append(tok)
        type_text = " ".join(type_tokens).replace(" (", "(")
        up = item.upper()
        columns.append({"name": name, "type": canonical_type(type_text), "not_null": "NOT NULL" in up or "PRIMARY KEY" in up,
                        "has_default": " DEFAULT " in " " + up + " " or "GENERATED" in up})
        if "PRIMARY KEY" in up:
            pk = [name]
    for col in columns:
        if col["name"] in pk:
            col["not_null"] = True
    return {"columns": columns, "primary_key": pk, "foreign_keys": fks}


_TYPE_ALIASES = {
    "varchar": "character varying", "char": "character", "bpchar": "character", "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone", "timetz": "time with time zone", "time": "time without time zone",
    "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
    "float8": "double precision", "float4": "real", "decimal": "numeric", "float": "double precision",
}


def canonical_type(type_text):
    """A type spelled the way format_type() spells it (``varchar(50)`` -> ``character varying(50)``)."""
    text = re.sub(r"\s+", " ", type_text.strip()).lower()
    m = re.match(r"^([a-z0-9_ ]+?)\s*(\([0-9, ]+\))?(\[\])?$", text)
    if not m:
        return type_text
    base, mod, arr = m.group(1).strip(), (m.group(2) or "").replace(" ", ""), m.group(3) or ""
    base = _TYPE_ALIASES.get(base, base)
    if mod.startswith("(") and mod.count(",") == 1 and base == "numeric":
        mod = mod.replace(",", ",")
    if base.startswith(("timestamp", "time ")) and mod:
        word = base.split(" ", 1)
        return "{0}{1} {2}{3}".format(word[0], mod, word[1], arr)
    return base + mod + arr


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

    def source_pk_json(self):
        sql = _sql()
        cols = self.source_pk or [self.t2s[k] for k in self.target_pk]
        return sql.SQL("jsonb_build_object({0})").format(sql.SQL(", ").join(
            sql.SQL("{0}, s.{1}").format(sql.Literal(c), sql.Identifier(c)) for c in cols))


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


def precheck(cur, ctx):
    """Rows whose mapped values would not arrive intact: [{kind, column, count, rows: [{pk, value}]}]."""
    sql = _sql()
    problems = []
    if ctx.source_oid is None:
        return problems
    limit = ctx.sample_limit
    pk_json = ctx.source_pk_json()
    for s, t in ctx.pairs:
        tcol = ctx.tgt_by_name[t]
        scol_ref = sql.SQL("s.{0}").format(sql.Identifier(s))
        if ctx.differs(s, t):
            # 1. values that do not cast at all
            cur.execute("SAVEPOINT pgsafe_precheck")
            try:
                cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1} IS NOT NULL AND {2} IS NULL").format(
                    ctx.source_ref(), scol_ref, ctx.expr(s, t)))
                cur.execute("RELEASE SAVEPOINT pgsafe_precheck")
                castable = True
            except Exception:  # noqa: BLE001
                cur.execute("ROLLBACK TO SAVEPOINT pgsafe_precheck")
                cur.execute("RELEASE SAVEPOINT pgsafe_precheck")
                castable = False
            if not castable:
                cur.execute(sql.SQL("SELECT DISTINCT {0}::text FROM {1} s WHERE {0} IS NOT NULL").format(
                    scol_ref, ctx.source_ref()))
                values = [r[0] for r in cur.fetchall()]
                bad = _bad_values(cur, ctx.src_by_name[s]["type"], tcol["type"], values)
                cur.execute(sql.SQL("SELECT {0}, {1}::text FROM {2} s WHERE {1}::text = ANY(%s) ORDER BY 1 "
                                    "LIMIT %s").format(pk_json, scol_ref, ctx.source_ref()), (bad, limit))
                rows = [{"pk": r[0], "value": r[1]} for r in cur.fetchall()]
                cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1}::text = ANY(%s)").format(
                    ctx.source_ref(), scol_ref), (bad,))
                problems.append({"kind": "cast", "column": "{0} -> {1} ({2} -> {3})".format(
                    s, t, ctx.src_by_name[s]["type"], tcol["type"]), "count": cur.fetchone()[0], "rows": rows,
                    "message": "values that do not cast to {0}".format(tcol["type"])})
            else:
                # 2. values the cast would change (truncate, round, re-spell)
                lossy = sql.SQL("{0} IS NOT NULL AND CAST({1} AS {2}) IS DISTINCT FROM {0}").format(
                    scol_ref, ctx.expr(s, t), sql.SQL(ctx.src_by_name[s]["type"]))
                cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1}").format(ctx.source_ref(), lossy))
                n = cur.fetchone()[0]
                if n and not ctx.allow_lossy_casts:
                    cur.execute(sql.SQL("SELECT {0}, {1}::text, ({2})::text FROM {3} s WHERE {4} ORDER BY 1 "
                                        "LIMIT %s").format(pk_json, scol_ref, ctx.expr(s, t), ctx.source_ref(),
                                                           lossy), (limit,))
                    problems.append({"kind": "lossy", "column": "{0} -> {1} ({2} -> {3})".format(
                        s, t, ctx.src_by_name[s]["type"], tcol["type"]), "count": n,
                        "rows": [{"pk": r[0], "value": r[1], "would_become": r[2]} for r in cur.fetchall()],
                        "message": "the cast changes these values (set allow_lossy_casts to accept)"})
        if tcol["not_null"]:
            cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE {1} IS NULL").format(ctx.source_ref(), scol_ref))
            n = cur.fetchone()[0]
            if n:
                cur.execute(sql.SQL("SELECT {0} FROM {1} s WHERE {2} IS NULL ORDER BY 1 LIMIT %s").format(
                    pk_json, ctx.source_ref(), scol_ref), (limit,))
                problems.append({"kind": "not_null", "column": "{0} -> {1}".format(s, t), "count": n,
                                 "rows": [{"pk": r[0], "value": None} for r in cur.fetchall()],
                                 "message": "NULL into NOT NULL column {0}".format(t)})
    if any(p["kind"] == "cast" for p in problems):
        return problems  # FK probes would cast the same values again
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
                pk_json, ctx.source_ref(), where), (limit,))
            problems.append({"kind": "fk", "column": ", ".join(fk["columns"]), "count": n,
                             "rows": [{"pk": r[0]} for r in cur.fetchall()],
                             "message": "no parent row in {0}".format(qualified(fk["ref_schema"], fk["ref_table"]))})
    return problems


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
def _row_text(exprs):
    sql = _sql()
    return sql.SQL("ROW({0})::text").format(exprs)


def proof(cur, ctx, quarantined_keys_sql, run_id):
    """EXCEPT both ways over the mapped columns + ordered content hashes + quarantined rows present."""
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
    cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM "
                        "(SELECT {0} AS r FROM {1} s WHERE {2}) x").format(
        _row_text(ctx.mapped_exprs()), ctx.source_ref(), keep))
    source_rows, source_hash = cur.fetchone()
    cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM "
                        "(SELECT {0} AS r FROM {1} t WHERE {2}) x").format(
        _row_text(ctx.target_cols()), ctx.target_ref(), in_source))
    target_rows, target_hash = cur.fetchone()
    cur.execute(sql.SQL("SELECT count(*) FROM {0} s WHERE ({1}) AND NOT EXISTS (SELECT 1 FROM pgsafe.quarantine_row q "
                        "WHERE q.run_id = %s AND q.source_schema = %s AND q.source_table = %s "
                        "AND q.row_sha256 = encode(sha256(convert_to(to_jsonb(s)::text, 'UTF8')), 'hex'))").format(
        ctx.source_ref(), quarantined_keys_sql), (run_id, ctx.source_schema, ctx.source_name))
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
    sql = _sql()
    return sql.SQL("LOCK TABLE {0} IN SHARE ROW EXCLUSIVE MODE").format(ctx.source_ref())


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
        quarantined_keys = sql.SQL("{0} = ANY(%s::jsonb[])").format(ctx.source_pk_json())
        quarantined_keys = sql.SQL(cur.mogrify(quarantined_keys.as_string(cur),
                                               ([json.dumps(k, sort_keys=True) for k in keys],)).decode())
        cur.execute(sql.SQL("""
            INSERT INTO pgsafe.quarantine_row (run_id, source_schema, source_table, source_pk, reason, row_data,
                                               row_sha256)
            SELECT %s, %s, %s, {0}, %s, to_jsonb(s), encode(sha256(convert_to(to_jsonb(s)::text, 'UTF8')), 'hex')
              FROM {1} s WHERE {2}""").format(ctx.source_pk_json(), ctx.source_ref(), quarantined_keys),
            (run_id, ctx.source_schema, ctx.source_name,
             "merge into {0}: key exists there with different values (policy keep_target)".format(ctx.target)))
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
        from ansible.module_utils.pgsafe_fingerprint import record_explanation, table_key
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
