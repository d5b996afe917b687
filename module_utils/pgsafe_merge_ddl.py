# -*- coding: utf-8 -*-
"""The reference DDL read for a merge target: statements split, a table's own statements picked, its CREATE
TABLE parsed (columns, primary key, foreign keys), type spellings brought to format_type()'s.  Pure Python.
"""
from __future__ import annotations

import re

_CONSTRAINT_WORDS = ("CONSTRAINT", "PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "EXCLUDE", "LIKE")
_COLUMN_STOP_WORDS = ("NOT", "NULL", "DEFAULT", "CONSTRAINT", "PRIMARY", "REFERENCES", "UNIQUE", "CHECK",
                      "COLLATE", "GENERATED")


class MergeError(Exception):
    """The merge cannot go ahead; the message names the table/column/rows and the fix."""


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
