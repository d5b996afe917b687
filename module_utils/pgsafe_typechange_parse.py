# -*- coding: utf-8 -*-
"""A type change as declared: target types, expressions, changes and foreign keys validated and normalised.

Pure Python (no database): the operator's ``changes`` and ``foreign_keys`` become the normalised dicts every
other part of the type change reads; type spellings are brought to ``format_type()``'s; an explicit ``using``
/ ``default`` expression is accepted only as one expression (``validate_expression``).
"""
from __future__ import annotations

import re

from ansible.module_utils.pgsafe_identifiers import qualified, split_qualified

NEW_SUFFIX = "pgsafe_new"
UUID_REGEX = r"^(\{[0-9A-Fa-f]{4}(-?[0-9A-Fa-f]{4}){7}\}|[0-9A-Fa-f]{4}(-?[0-9A-Fa-f]{4}){7})$"
_UUID_RE = re.compile(UUID_REGEX)

FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_ACTION_WORDS = {v: v for v in FK_ACTIONS.values()}
_ACTION_WORDS.update({"NO_ACTION": "NO ACTION", "SET_NULL": "SET NULL", "SET_DEFAULT": "SET DEFAULT"})

_TYPE_ALIASES = {
    "varchar": "character varying", "char": "character", "bpchar": "character", "int": "integer",
    "int4": "integer", "int8": "bigint", "int2": "smallint", "float8": "double precision", "float4": "real",
    "bool": "boolean", "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
    "timetz": "time with time zone", "time": "time without time zone", "decimal": "numeric",
}


class TypeChangeError(Exception):
    """The change cannot (or must not) proceed; the message names the object and the fix."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


def canonical_type_text(text):
    """Normalise a type spelling for comparison with format_type(): 'varchar(255)' -> 'character varying(255)'."""
    if not isinstance(text, str) or not text.strip():
        raise TypeChangeError("a target type must be a non-empty string, got {0!r}".format(text))
    t = " ".join(text.strip().lower().split())
    m = re.match(r"^([a-z_][a-z0-9_ ]*?)\s*(\(\s*([0-9]+(\s*,\s*[0-9]+)?)\s*\))?\s*(\[\])?$", t)
    if not m:
        raise TypeChangeError("target type {0!r} is not a plain type name: write e.g. uuid, varchar(255), "
                              "numeric(10,2)".format(text))
    base, mods, arr = m.group(1), m.group(3), m.group(5) or ""
    base = _TYPE_ALIASES.get(base, base)
    mods = ",".join(p.strip() for p in mods.split(",")) if mods else None
    if mods is None:
        return base + arr
    if base in ("timestamp without time zone", "timestamp with time zone", "time without time zone",
                "time with time zone"):
        head, _, tail = base.partition(" ")
        return "{0}({1}) {2}{3}".format(head, mods, tail, arr)
    return "{0}({1}){2}".format(base, mods, arr)


def varchar_limit(type_text):
    """n of character varying(n) / character(n), else None."""
    m = re.match(r"^(character varying|character)\((\d+)\)$", canonical_type_text(type_text))
    return int(m.group(2)) if m else None


def is_uuid_target(type_text):
    return canonical_type_text(type_text) == "uuid"


def uuid_accepts(value):
    """What uuid_in accepts (mirror of the server regex, for unit tests and reports)."""
    return value is not None and bool(_UUID_RE.match(value))


def normalise_uuid(value):
    """Canonical text of a uuid spelling uuid_in accepts, else None."""
    if not uuid_accepts(value):
        return None
    h = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    return "{0}-{1}-{2}-{3}-{4}".format(h[:8], h[8:12], h[12:16], h[16:20], h[20:])


_FORBIDDEN_EXPR = re.compile(r";|--|/\*|\*/|\\")


def validate_expression(expr, what):
    """An operator-written SQL expression (using / default): one expression, no statement separator."""
    if not isinstance(expr, str) or not expr.strip():
        raise TypeChangeError("{0} must be a non-empty SQL expression".format(what))
    if _FORBIDDEN_EXPR.search(expr):
        raise TypeChangeError("{0} {1!r} contains ';', a comment or a backslash: give a single SQL expression"
                              .format(what, expr))
    depth = 0
    for ch in expr:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            break
    if depth != 0 or expr.count("'") % 2 or expr.count('"') % 2:
        raise TypeChangeError("{0} {1!r} has unbalanced parentheses or quotes".format(what, expr))
    return expr.strip()


def fk_action(word):
    key = (word or "NO ACTION").strip().upper().replace("-", " ")
    key = " ".join(key.split())
    if key.replace(" ", "_") in _ACTION_WORDS:
        return _ACTION_WORDS[key.replace(" ", "_")]
    if key in _ACTION_WORDS:
        return _ACTION_WORDS[key]
    raise TypeChangeError("unknown FK action {0!r}: use NO ACTION, RESTRICT, CASCADE, SET NULL or SET DEFAULT"
                          .format(word))


def normalise_changes(changes, default_schema="public"):
    """Validate and normalise the declared changes (list of dicts)."""
    out, seen = [], set()
    for i, ch in enumerate(changes or []):
        if not isinstance(ch, dict) or not ch.get("table") or not ch.get("column") or not ch.get("type"):
            raise TypeChangeError("changes[{0}] needs table, column and type".format(i))
        schema, table = split_qualified(ch["table"], default_schema)
        item = {"schema": schema, "table": table, "column": ch["column"], "type": canonical_type_text(ch["type"]),
                "type_text": ch["type"].strip(), "using": None, "default": None,
                # A default given sets it, drop_default drops it; no default (absent, or null as Ansible passes an
                # option not given) keeps it: the plan step and the module read the same change the same way.
                "set_default": ch.get("default") is not None or bool(ch.get("drop_default")),
                "not_null": ch.get("not_null")}
        if ch.get("using") is not None:
            item["using"] = validate_expression(ch["using"], "changes[{0}].using".format(i))
        if "default" in ch and ch["default"] is not None:
            item["default"] = validate_expression(str(ch["default"]), "changes[{0}].default".format(i))
        key = (schema, table, ch["column"])
        if key in seen:
            raise TypeChangeError("column {0}.{1} appears twice in changes".format(qualified(schema, table),
                                                                                    ch["column"]))
        seen.add(key)
        out.append(item)
    return out


def normalise_fks(fks, default_schema="public"):
    out = []
    for i, fk in enumerate(fks or []):
        for key in ("name", "table", "columns", "ref_table", "ref_columns"):
            if not fk.get(key):
                raise TypeChangeError("foreign_keys[{0}] needs {1}".format(i, key))
        schema, table = split_qualified(fk["table"], default_schema)
        rschema, rtable = split_qualified(fk["ref_table"], default_schema)
        cols = list(fk["columns"]) if isinstance(fk["columns"], list) else [fk["columns"]]
        rcols = list(fk["ref_columns"]) if isinstance(fk["ref_columns"], list) else [fk["ref_columns"]]
        if len(cols) != len(rcols):
            raise TypeChangeError("foreign key {0}: columns and ref_columns differ in length".format(fk["name"]))
        out.append({"name": fk["name"], "schema": schema, "table": table, "columns": cols,
                    "ref_schema": rschema, "ref_table": rtable, "ref_columns": rcols,
                    "on_delete": fk_action(fk.get("on_delete")), "on_update": fk_action(fk.get("on_update"))})
    return out
