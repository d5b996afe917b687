# -*- coding: utf-8 -*-
"""Schema snapshots: what a database's schema is, as a versioned, JSON-serialisable document.

``take_snapshot(cur)`` reads the catalog with ONE query per object kind (never one per table),
inside whatever transaction the caller opened (read-only is enough: only SELECT and SET LOCAL
are issued).  Session settings that change how the catalog is printed (search_path, DateStyle,
TimeZone, IntervalStyle, extra_float_digits) are pinned for the transaction, so two databases
print the same expression the same way: types and defaults come out schema-qualified.

Document layout (``FORMAT_VERSION`` 1); every key of a kind is the quoted qualified name
(``"public"."bazaar-vid_exports"``), so keys never collide whatever the names contain::

    {format_version, meta: {...volatile...}, schemas, tables, constraints, indexes, views,
     functions, triggers, sequences, extensions, enums, domains, policies}

``schema_fingerprint(snapshot)`` is a sha256 of a canonical form without the product's own
schemas and without volatile data (row estimates, sizes, time taken, server version).

Plain Python; no Ansible import.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import fnmatch
import gc
import hashlib
import json
import operator

from ansible.module_utils.pgsafe_identifiers import quote_ident
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS
from ansible.module_utils.pgsafe_snapshot_queries import QUERIES

FORMAT_VERSION = 1
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
DEFAULT_IGNORE_SCHEMAS = PRODUCT_SCHEMAS + SYSTEM_SCHEMAS
KINDS = ("schemas", "tables", "constraints", "indexes", "views", "functions", "triggers", "sequences",
         "extensions", "enums", "domains", "policies")
# Kinds whose objects hang off a table (ignored with their table).
TABLE_CHILD_KINDS = ("constraints", "indexes", "triggers", "policies")
# Data that changes without a schema change: never compared, never fingerprinted.
VOLATILE_TABLE_KEYS = ("reltuples", "estimated_bytes", "analyzed", "live_rows", "writes")

PINNED_SETTINGS = (
    ("search_path", "pg_catalog"),
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
)

RELKIND = {"r": "table", "p": "partitioned table", "f": "foreign table", "v": "view", "m": "materialized view"}
FK_ACTION = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
FK_MATCH = {"f": "FULL", "p": "PARTIAL", "s": "SIMPLE"}
CONTYPE = {"p": "primary key", "u": "unique", "c": "check", "f": "foreign key", "x": "exclusion", "t": "trigger"}
PROKIND = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
POLCMD = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}

def qname(*parts):
    """Quoted qualified name: ``"schema"."table"`` or ``"schema"."table"."column"``."""
    return ".".join(quote_ident(p) for p in parts)


def _q(name):
    """quote_ident for names read from the catalog (valid by construction: no checks, it runs 100,000 times)."""
    return '"' + name.replace('"', '""') + '"'


def _qn(*parts):
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def plain_name(*parts):
    """Unquoted dotted name, what ignore patterns match (``public.bazaar-vid_exports``)."""
    return ".".join(parts)


class _Filter:
    """Schema and name-pattern ignore rules (patterns: fnmatch, case-sensitive, on schema.name)."""

    def __init__(self, ignore_schemas=(), ignore_patterns=()):
        self.schemas = set(ignore_schemas or ())
        self.patterns = tuple(ignore_patterns or ())

    def ignored(self, schema, *names):
        if schema in self.schemas:
            return True
        if not self.patterns:
            return False
        for depth in range(1, len(names) + 1):
            text = plain_name(schema, *names[:depth])
            if any(fnmatch.fnmatchcase(text, pattern) for pattern in self.patterns):
                return True
        return False


def _idents(names):
    if len(names) == 1:
        return '"' + names[0].replace('"', '""') + '"'
    return ", ".join(['"' + n.replace('"', '""') + '"' for n in names])


def _without_name(definition, keyword, quoted_name):
    """'CREATE INDEX ON ...' from 'CREATE INDEX "my idx" ON ...': definitions compare without their name."""
    return (definition or "").replace(keyword + quoted_name + " ", keyword, 1)


_PLAIN_COLLATIONS = {"0", "100"}  # none, or the database default


def _index_keys(relid, method, nkey, indkey_text, indclass_text, indcoll_text, indoption_text, expr_keys,
                attnames, collations, opclasses):
    """An index's key names and their shown form (with collation, operator class and ordering)."""
    indkey, indclass, indcoll, indoption = ([int(v) for v in (text or "").split()]
                                            for text in (indkey_text, indclass_text, indcoll_text, indoption_text))
    keys, shown = [], []
    for pos, attnum in enumerate(indkey or []):
        if attnum:
            key_text = attnames.get((relid, attnum), ("#{0}".format(attnum), None))[0]
            shown_text = _q(key_text)
        else:
            key_text = shown_text = (expr_keys or [])[pos] if expr_keys and pos < len(expr_keys) else "?"
        if expr_keys and pos < len(expr_keys):
            key_text = expr_keys[pos] if not attnum else key_text
        if pos < nkey:
            coll = (indcoll or [0] * (pos + 1))[pos]
            # 100 is the database default; a column's own collation is None when it is the default.
            if coll and coll != ((attnames.get((relid, attnum)) or (None, None))[1] or 100):
                shown_text += " COLLATE " + _qn(*reversed(collations.get(coll, ("#" + str(coll), "?"))))
            opc = opclasses.get((indclass or [0] * (pos + 1))[pos])
            if opc:
                shown_text += " " + (opc[0] if opc[1] == "pg_catalog" else _qn(opc[1], opc[0]))
            option = (indoption or [0] * (pos + 1))[pos]
            if method == "btree" or option:
                desc, nulls_first = bool(option & 1), bool(option & 2)
                shown_text += (" DESC" if desc else "") + (
                    " NULLS FIRST" if nulls_first and not desc else " NULLS LAST" if desc and not nulls_first else "")
        keys.append(key_text)
        shown.append(shown_text)
    return keys, shown


def _pin_settings(cur):
    _set_local(cur, PINNED_SETTINGS + (("work_mem", "64MB"),))  # sorts of big catalogs stay in memory


# Planner settings for one query only, undone right after it.  The index query joins every index to its
# relation: hash joins beat thousands of index probes there (16.6 -> 13.1 ms at 2,000 tables).  Never for
# every query: with nested loops off, the sequences query's per-sequence subquery turns into hash joins
# over whole catalogs (14 s instead of 34 ms for 4,000 sequences).
QUERY_SETTINGS = {"indexes": (("enable_nestloop", "off"),)}


def _rows(cur, kind, ignore_schemas):
    settings = QUERY_SETTINGS.get(kind, ())
    if settings:  # one round trip: the current values, then the query's own
        cur.execute("SELECT " + ", ".join(["current_setting(%s), set_config(%s, %s, true)"] * len(settings)),
                    [item for name, value in settings for item in (name, name, value)])
        row = cur.fetchone()
        previous = [(name, row[2 * i]) for i, (name, _) in enumerate(settings)]
    cur.execute(QUERIES[kind], {"ignore": list(ignore_schemas)})
    rows = cur.fetchall()
    if settings:
        _set_local(cur, previous)
    return rows


def _set_local(cur, settings):
    """SET LOCAL the (name, value) pairs in one round trip."""
    cur.execute("SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(settings)),
                [item for pair in settings for item in pair])


def take_snapshot(cur, ignore_schemas=DEFAULT_IGNORE_SCHEMAS, ignore_patterns=()):
    """Snapshot the schema of the database ``cur`` is connected to.

    ``ignore_schemas``: schema names left out (default: the product's own schemas and the system
    schemas; system schemas are always left out).  ``ignore_patterns``: fnmatch patterns on the
    unquoted ``schema.name`` of an object (``schema.table.name`` for a table's constraints, indexes,
    triggers, policies and columns); an ignored table takes its columns, constraints, indexes,
    triggers and policies with it.

    Issues only SELECT, SAVEPOINT and transaction-local set_config: safe in a READ ONLY transaction.
    Works in the caller's transaction (the pinned settings are undone by rolling back to a savepoint,
    so the caller's search_path and friends are untouched afterwards) or on an autocommit connection
    (in a transaction of its own, rolled back).
    """
    autocommit = bool(getattr(cur.connection, "autocommit", False))
    cur.execute("BEGIN" if autocommit else "SAVEPOINT pgsafe_snapshot")
    try:
        with no_cyclic_gc():
            return _take_snapshot(cur, ignore_schemas, ignore_patterns)
    finally:
        if autocommit:
            cur.execute("ROLLBACK")
        elif cur.connection.get_transaction_status() != 3:  # not INERROR: undo the settings, keep the transaction
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_snapshot; RELEASE SAVEPOINT pgsafe_snapshot")
        else:
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_snapshot")


@contextlib.contextmanager
def no_cyclic_gc():
    """Snapshots are tens of thousands of small acyclic dicts: the cyclic collector would only rescan them."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _take_snapshot(cur, ignore_schemas, ignore_patterns):
    ignore_schemas = tuple(dict.fromkeys(tuple(ignore_schemas or ()) + SYSTEM_SCHEMAS))
    flt = _Filter(ignore_schemas, ignore_patterns)
    _pin_settings(cur)
    cur.execute("SELECT current_database(), current_setting('server_version'), "
                "current_setting('server_version_num')::int")
    database, version, version_num = cur.fetchone()
    snap = {"format_version": FORMAT_VERSION,
            "meta": {"database": database, "server_version": version, "server_version_num": version_num,
                     "taken_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "ignore_schemas": list(ignore_schemas), "ignore_patterns": list(ignore_patterns or ())}}
    for kind in KINDS:
        snap[kind] = {}

    for schema, comment in _rows(cur, "schemas", ignore_schemas):
        if not flt.ignored(schema):
            snap["schemas"][_q(schema)] = {"name": schema, "comment": comment}
    rels, names_by_oid = _read_relations(cur, snap, flt, ignore_schemas)
    columns = _read_columns(cur, rels, flt, ignore_schemas)
    backing = _read_constraints(cur, snap, rels, names_by_oid, columns, flt, ignore_schemas)
    _read_indexes(cur, snap, rels, columns, backing, flt, ignore_schemas)
    _read_other_kinds(cur, snap, flt, ignore_schemas)
    return snap


def _read_relations(cur, snap, flt, ignore_schemas):
    """Tables and views into ``snap``; {oid: (schema, name, key, object, is a table, quoted schema)}, names by oid."""
    rels = {}  # oid -> (schema, name, key, owner dict, is a table, quoted schema)
    quoted_schemas = {}
    rows = _rows(cur, "relations", ignore_schemas)
    names_by_oid = {row[0]: (row[1], row[2]) for row in rows}
    for (oid, schema, name, relkind, persistence, reltuples, est_bytes, live_rows, writes, rls, rls_forced, options,
         partkey, parent_oid, bound, viewdef, comment) in rows:
        if flt.ignored(schema, name):
            continue
        qschema = quoted_schemas.get(schema)
        if qschema is None:
            qschema = quoted_schemas[schema] = _q(schema)
        key = qschema + "." + _q(name)
        if relkind in ("v", "m"):
            obj = snap["views"][key] = {"schema": schema, "name": name, "kind": RELKIND[relkind],
                                        "definition": " ".join((viewdef or "").split()), "comment": comment,
                                        "columns": {}}
        else:
            parent = names_by_oid.get(parent_oid) if parent_oid else None
            obj = snap["tables"][key] = {
                "schema": schema, "name": name, "kind": RELKIND[relkind],
                "persistence": {"p": "permanent", "u": "unlogged", "t": "temporary"}.get(persistence, persistence),
                "partition_key": partkey, "partition_of": _qn(*parent) if parent else None,
                "partition_bound": bound, "rls_enabled": bool(rls), "rls_forced": bool(rls_forced),
                "options": sorted(options or []), "comment": comment, "columns": {},
                "reltuples": max(reltuples or 0.0, 0.0), "estimated_bytes": int(est_bytes or 0),
                # statistics (volatile, never compared): rows and writes since the statistics were reset
                "analyzed": (reltuples or 0.0) >= 0, "live_rows": int(live_rows or 0), "writes": int(writes or 0),
            }
        rels[oid] = (schema, name, key, obj, relkind not in ("v", "m"), qschema)
    return rels, names_by_oid


class _Columns:
    """Column names by (relation oid, attnum), relations with collated columns, collations, operator classes."""

    def __init__(self, attnames, collated_rels, collations, opclasses):
        self.attnames, self.collated_rels, self.collations, self.opclasses = \
            attnames, collated_rels, collations, opclasses

    def names(self, relid, numbers_text):
        attnames = self.attnames
        if not numbers_text:
            return []
        if " " not in numbers_text:  # one key: the common case
            item = attnames.get((relid, int(numbers_text)))
            return [item[0] if item else "#" + numbers_text]
        numbers = numbers_text.split()
        found = [attnames.get((relid, int(num))) for num in numbers]
        if None not in found:
            return [item[0] for item in found]
        return [item[0] if item else "#" + numbers[pos] for pos, item in enumerate(found)]


def _read_columns(cur, rels, flt, ignore_schemas):
    """Every relation's columns into its object (``columns``); the names index keys and constraints use."""
    collations = {oid: (name, nsp) for oid, name, nsp in _rows(cur, "collations", ignore_schemas)}
    opclasses = {oid: (name, nsp) for oid, name, nsp in _rows(cur, "opclasses", ignore_schemas)}
    attnames = {}  # (rel oid, attnum) -> (name, collation oid)
    defaults = {(relid, num): text for relid, num, text in _rows(cur, "defaults", ignore_schemas)}
    comments = {(relid, num): text for relid, num, text in _rows(cur, "column_comments", ignore_schemas)}
    identities = {"a": "always", "d": "by default"}
    position, last, owner_columns, rel = 0, None, None, None
    column_rows = _rows(cur, "columns", ignore_schemas)
    column_rows.sort(key=operator.itemgetter(0, 1))  # here, not in SQL: a server sort costs more
    collated_rels = set()  # relations with a column of its own collation (their index keys may show COLLATE)
    get_default, get_comment = defaults.get, comments.get
    for relid, attnum, column, typ, notnull, flags, coll_oid in column_rows:
        attkey = (relid, attnum)
        attnames[attkey] = (column, coll_oid)
        if coll_oid:  # before any column is skipped: index keys on ignored columns are spelled the same way
            collated_rels.add(relid)
        if relid != last:
            last, position = relid, 0
            rel = rels.get(relid)
            owner_columns = rel[3]["columns"] if rel is not None else None
        if owner_columns is None:
            continue
        position += 1
        if flt.patterns and flt.ignored(rel[0], rel[1], column):
            continue
        collation = None
        if coll_oid:
            coll = collations.get(coll_oid)
            collation = coll[0] if coll and coll[1] == "pg_catalog" else (_qn(coll[1], coll[0]) if coll else None)
        owner_columns[column] = {
            "position": position, "type": typ, "not_null": notnull, "default": get_default(attkey),
            "identity": identities.get(flags) if flags else None,
            "generated": "stored" if flags == "s" else None,
            "collation": collation, "comment": get_comment(attkey),
        }
    return _Columns(attnames, collated_rels, collations, opclasses)


def _read_constraints(cur, snap, rels, names_by_oid, columns, flt, ignore_schemas):
    """Constraints into ``snap``; {index oid: constraint} of the ones an index backs."""
    colnames = columns.names
    backing = {}  # index oid -> constraint
    for (relid, name, contype, definition, deferrable, deferred, validated, conkey, frelid, confkey, upd, dele,
         match, indid, comment) in _rows(cur, "constraints", ignore_schemas):
        rel = rels.get(relid)
        if rel is None or not rel[4] or (flt.patterns and flt.ignored(rel[0], rel[1], name)):
            continue
        cols = colnames(relid, conkey)
        item = {"schema": rel[0], "table": rel[2], "name": name, "type": CONTYPE.get(contype, contype),
                "definition": definition, "columns": cols, "deferrable": bool(deferrable),
                "initially_deferred": bool(deferred), "validated": bool(validated), "comment": comment}
        if contype == "f":
            ref = rels.get(frelid)
            if ref is not None:
                ref_name = ref[2]
            else:
                ref = names_by_oid.get(frelid)
                ref_name = _qn(*ref) if ref else "#{0}".format(frelid)
            ref_cols = colnames(frelid, confkey)
            item.update({"references": ref_name, "ref_columns": ref_cols,
                         "on_update": FK_ACTION.get(upd, upd), "on_delete": FK_ACTION.get(dele, dele),
                         "match": FK_MATCH.get(match, match)})
            item["definition"] = "FOREIGN KEY ({0}) REFERENCES {1} ({2}){3}{4}{5}".format(
                _idents(cols), ref_name, _idents(ref_cols), "" if match == "s" else " MATCH " + item["match"],
                "" if upd == "a" else " ON UPDATE " + item["on_update"],
                "" if dele == "a" else " ON DELETE " + item["on_delete"])
        elif contype in ("p", "u"):
            item["definition"] = "{0} ({1})".format("PRIMARY KEY" if contype == "p" else "UNIQUE", _idents(cols))
            backing[indid] = item
        elif indid:
            backing[indid] = item
        snap["constraints"][rel[2] + "." + _q(name)] = item
    return backing


def _read_indexes(cur, snap, rels, columns, backing, flt, ignore_schemas):
    colnames, attnames, collated_rels = columns.names, columns.attnames, columns.collated_rels
    collations, opclasses = columns.collations, columns.opclasses
    nondefault_opclasses = {str(oid) for oid in opclasses}
    for (relid, name, method, unique, primary, valid, nkey, indkey_text, indclass_text, indcoll_text, indoption_text,
         expr_keys, predicate, options, indexrelid, comment) in _rows(cur, "indexes", ignore_schemas):
        rel = rels.get(relid)
        if rel is None or (flt.patterns and flt.ignored(rel[0], rel[1], name)):
            continue
        if (not expr_keys and relid not in collated_rels and not (indoption_text or "").replace(" ", "").strip("0")
                and set((indcoll_text or "").split()) <= _PLAIN_COLLATIONS
                and nondefault_opclasses.isdisjoint((indclass_text or "").split())):
            # Plain column keys (the common case): no expression, collation, operator class or ordering to show.
            keys = colnames(relid, indkey_text)
            shown = [_q(key) for key in keys]
        else:
            keys, shown = _index_keys(relid, method, nkey, indkey_text, indclass_text, indcoll_text, indoption_text,
                                      expr_keys, attnames, collations, opclasses)
        definition = "CREATE {0}INDEX ON {1} USING {2} ({3}){4}{5}{6}".format(
            "UNIQUE " if unique else "", rel[2], method, ", ".join(shown[:nkey]),
            " INCLUDE ({0})".format(", ".join(shown[nkey:])) if len(shown) > nkey else "",
            " WITH ({0})".format(", ".join(sorted(options))) if options else "",
            " WHERE " + predicate if predicate else "")
        con = backing.get(indexrelid)
        if con is not None and len(keys) > nkey and con["type"] in ("primary key", "unique"):
            con["definition"] += " INCLUDE ({0})".format(_idents(keys[nkey:]))
        snap["indexes"][rel[5] + "." + _q(name)] = {
            "schema": rel[0], "table": rel[2], "name": name, "method": method, "unique": bool(unique),
            "primary": bool(primary), "valid": bool(valid), "keys": keys[:nkey], "include": keys[nkey:],
            "predicate": predicate, "definition": definition, "constraint_backed": con is not None,
            "comment": comment,
        }


def _read_other_kinds(cur, snap, flt, ignore_schemas):
    """Functions, triggers, sequences, extensions, enums, domains and policies into ``snap``."""
    for (schema, name, args, prokind, result, language, volatility, secdef, strict, config, body_sha,
         comment) in _rows(cur, "functions", ignore_schemas):
        if flt.ignored(schema, name):
            continue
        snap["functions"]["{0}({1})".format(_qn(schema, name), args)] = {
            "schema": schema, "name": name, "arguments": args, "kind": PROKIND.get(prokind, prokind),
            "result": result, "language": language, "volatility": VOLATILITY.get(volatility, volatility),
            "security_definer": bool(secdef), "strict": bool(strict), "config": sorted(config or []),
            "body_sha256": body_sha, "comment": comment,
        }

    for schema, table, name, definition, quoted, enabled, comment in _rows(cur, "triggers", ignore_schemas):
        parent = _qn(schema, table)
        if (parent not in snap["tables"] and parent not in snap["views"]) or flt.ignored(schema, table, name):
            continue
        snap["triggers"][_qn(schema, table, name)] = {
            "schema": schema, "table": parent, "name": name, "definition": _without_name(definition, "TRIGGER ", quoted),
            "enabled": {"O": "origin", "D": "disabled", "R": "replica", "A": "always"}.get(enabled, enabled),
            "comment": comment}

    for (schema, name, typ, start, inc, smin, smax, cache, cycle, owned_by, identity,
         comment) in _rows(cur, "sequences", ignore_schemas):
        if identity or flt.ignored(schema, name):
            continue  # identity sequences belong to their column (columns[].identity)
        snap["sequences"][_qn(schema, name)] = {
            "schema": schema, "name": name, "type": typ, "start": start, "increment": inc, "min": smin,
            "max": smax, "cache": cache, "cycle": bool(cycle), "owned_by": owned_by, "comment": comment}

    for name, version, schema, comment in _rows(cur, "extensions", ignore_schemas):
        snap["extensions"][_q(name)] = {"name": name, "version": version, "schema": schema,
                                                 "comment": comment}

    for schema, name, labels, comment in _rows(cur, "enums", ignore_schemas):
        if not flt.ignored(schema, name):
            snap["enums"][_qn(schema, name)] = {"schema": schema, "name": name, "labels": list(labels or []),
                                                  "comment": comment}

    for schema, name, base, notnull, default, collation, checks, comment in _rows(cur, "domains", ignore_schemas):
        if not flt.ignored(schema, name):
            snap["domains"][_qn(schema, name)] = {
                "schema": schema, "name": name, "base_type": base, "not_null": bool(notnull), "default": default,
                "collation": collation, "constraints": list(checks or []), "comment": comment}

    for schema, table, name, cmd, permissive, roles, qual, check, comment in _rows(cur, "policies", ignore_schemas):
        parent = _qn(schema, table)
        if parent not in snap["tables"] or flt.ignored(schema, table, name):
            continue
        snap["policies"][_qn(schema, table, name)] = {
            "schema": schema, "table": parent, "name": name, "command": POLCMD.get(cmd, cmd),
            "permissive": bool(permissive), "roles": list(roles or []), "using": qual, "with_check": check,
            "comment": comment}


def check_snapshot(snapshot):
    """Raise ValueError unless ``snapshot`` is a snapshot document this code can read."""
    if not isinstance(snapshot, dict) or "format_version" not in snapshot:
        raise ValueError("not a pgsafe schema snapshot (no format_version key)")
    if snapshot["format_version"] != FORMAT_VERSION:
        raise ValueError("snapshot format_version {0} is not supported (this pgsafe reads version {1}): take the "
                         "snapshot again with this version".format(snapshot["format_version"], FORMAT_VERSION))
    missing = [kind for kind in KINDS if kind not in snapshot]
    if missing:
        raise ValueError("snapshot lacks the object kinds {0}".format(", ".join(missing)))
    return snapshot


def filter_snapshot(snapshot, ignore_schemas=PRODUCT_SCHEMAS, ignore_patterns=()):
    """A copy of ``snapshot`` without the objects the ignore rules name (snapshots read from files)."""
    check_snapshot(snapshot)
    flt = _Filter(ignore_schemas, ignore_patterns)
    out = {key: value for key, value in snapshot.items() if key not in KINDS}
    if not flt.patterns:  # fast path: schemas only (a child object's schema is its table's)
        for kind in KINDS:
            items = snapshot[kind]
            if kind == "extensions" or not any(obj.get("schema", obj.get("name")) in flt.schemas
                                               for obj in items.values()):
                out[kind] = items
            else:
                out[kind] = {key: obj for key, obj in items.items()
                             if obj.get("schema", obj.get("name")) not in flt.schemas}
        return out
    for kind in KINDS:
        out[kind] = {}
        for key, obj in snapshot[kind].items():
            if kind == "extensions":
                out[kind][key] = obj
                continue
            schema = obj.get("schema", obj.get("name"))
            if kind == "schemas":
                names = ()
            elif kind in TABLE_CHILD_KINDS:
                parent = snapshot["tables"].get(obj["table"]) or snapshot["views"].get(obj["table"]) or {}
                names = (parent.get("name", ""), obj["name"])
            else:
                names = (obj["name"],)
            if flt.ignored(schema, *names):
                continue
            if kind in TABLE_CHILD_KINDS and flt.ignored(schema, names[0]):
                continue
            if kind in ("tables", "views"):
                out[kind][key] = dict(obj, columns={c: v for c, v in obj["columns"].items()
                                                    if not flt.ignored(schema, obj["name"], c)})
            else:
                out[kind][key] = obj
    return out


def canonical(snapshot):
    """The part of a snapshot that defines the schema: no product schemas, nothing volatile."""
    snap = filter_snapshot(snapshot, PRODUCT_SCHEMAS)
    out = {"format_version": snap["format_version"]}
    for kind in KINDS:
        out[kind] = copy.deepcopy(snap[kind])
    for table in out["tables"].values():
        for key in VOLATILE_TABLE_KEYS:
            table.pop(key, None)
    return out


def schema_fingerprint(snapshot):
    """Stable sha256 (64 hex digits) of the canonical form of ``snapshot``.

    Equal for two databases with the same schema, whatever their data, row estimates, oids, server
    session settings or the product schemas' content; different as soon as any compared attribute
    (type, default, constraint, index, comment, column order, ...) differs.
    """
    text = json.dumps(canonical(snapshot), sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def snapshot_counts(snapshot):
    """Number of objects per kind (columns counted apart)."""
    counts = {kind: len(snapshot.get(kind, {})) for kind in KINDS}
    counts["columns"] = sum(len(t["columns"]) for t in snapshot.get("tables", {}).values())
    return counts


def dumps(snapshot):
    """The snapshot as the JSON text written to files (sorted keys, stable across runs)."""
    return json.dumps(snapshot, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n"


# --------------------------------------------------------------------------- sources (need a server)
class SnapshotSourceError(Exception):
    """A snapshot source could not be read; the message names it and says what to do."""


def live_snapshot(params, ignore_schemas=DEFAULT_IGNORE_SCHEMAS, ignore_patterns=()):
    """Snapshot the database ``params`` (login_* options) name, in a READ ONLY transaction."""
    from ansible.module_utils.pgsafe_connection import connect  # noqa: PLC0415 (plain import for unit tests)

    conn = connect(params, read_only=True, settings={"statement_timeout": "60s", "lock_timeout": "5s"})
    try:
        with conn.cursor() as cur:
            return take_snapshot(cur, ignore_schemas, ignore_patterns)
    finally:
        conn.rollback()
        conn.close()


def read_snapshot_file(path):
    """A snapshot saved by pgsafe_snapshot (dest) or dumps()."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise SnapshotSourceError("cannot read snapshot file {0}: {1}".format(path, exc.strerror)) from None
    except ValueError as exc:
        raise SnapshotSourceError("snapshot file {0} is not JSON: {1}".format(path, exc)) from None
    try:
        return check_snapshot(data)
    except ValueError as exc:
        raise SnapshotSourceError("snapshot file {0}: {1}".format(path, exc)) from None


def scratch_server(params, scratch=None):
    """The server that loads DDL into a throwaway database: ``scratch`` (a whole connection) when given, else the
    module's own server (database postgres, without the module's session_role)."""
    if scratch:
        return scratch
    from ansible.module_utils.pgsafe_connection import CONNECTION_OPTION_NAMES
    return dict({name: params.get(name) for name in CONNECTION_OPTION_NAMES}, login_db="postgres", session_role=None)


def ddl_snapshot(scratch_params, ddl_text, ignore_schemas=DEFAULT_IGNORE_SCHEMAS, ignore_patterns=(),
                 prefix="pgsafe_scratch", label="DDL"):
    """Load ``ddl_text`` into a throwaway database on the scratch server and snapshot it.

    The database is uniquely named (``<prefix>_<12 hex>``), created from template0 (nothing of
    template1 leaks in), loaded in one transaction, snapshotted, and always dropped.  Returns
    (snapshot, database name used).
    """
    import uuid  # noqa: PLC0415

    from psycopg2 import Error as PgError  # noqa: PLC0415
    from psycopg2 import sql  # noqa: PLC0415

    from ansible.module_utils.pgsafe_connection import connect  # noqa: PLC0415

    name = "{0}_{1}".format(prefix, uuid.uuid4().hex[:12])
    admin = connect(scratch_params, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {0} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
        try:
            conn = connect(scratch_params, dbname=name)
            try:
                with conn.cursor() as cur:
                    try:
                        cur.execute(ddl_text)
                    except PgError as exc:
                        conn.rollback()
                        detail = " ".join((exc.pgerror or str(exc)).split())
                        raise SnapshotSourceError("cannot load {0} into a scratch database: {1}. Fix the DDL file "
                                                  "(it must run on an empty database)".format(label, detail)) from None
                conn.commit()
                conn.set_session(readonly=True)
                with conn.cursor() as cur:
                    snap = take_snapshot(cur, ignore_schemas, ignore_patterns)
                conn.rollback()
            finally:
                conn.close()
        finally:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {0}").format(sql.Identifier(name)))
    finally:
        admin.close()
    snap["meta"]["source"] = label
    return snap, name
