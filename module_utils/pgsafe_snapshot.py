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

import copy
import datetime
import fnmatch
import hashlib
import json

from ansible.module_utils.pgsafe_identifiers import quote_ident
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS

FORMAT_VERSION = 1
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
DEFAULT_IGNORE_SCHEMAS = PRODUCT_SCHEMAS + SYSTEM_SCHEMAS
KINDS = ("schemas", "tables", "constraints", "indexes", "views", "functions", "triggers", "sequences",
         "extensions", "enums", "domains", "policies")
# Kinds whose objects hang off a table (ignored with their table).
TABLE_CHILD_KINDS = ("constraints", "indexes", "triggers", "policies")
# Data that changes without a schema change: never compared, never fingerprinted.
VOLATILE_TABLE_KEYS = ("reltuples", "estimated_bytes")

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

# Filter on a namespace alias ``n``: %(ignore)s is an array of schema names.
_NS_FILTER = ("n.nspname <> ALL(%(ignore)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
              "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'")


def _not_extension_member(alias, catalog):
    return ("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{1}'::regclass AND e.objid = {0}.oid "
            "AND e.deptype = 'e')".format(alias, catalog))


def _comment(alias, catalog, subid="0"):
    """LEFT JOIN of pg_description for a comment (joins, never one function call per row)."""
    return ("LEFT JOIN pg_description d_{0} ON d_{0}.objoid = {0}.oid AND d_{0}.classoid = '{1}'::regclass "
            "AND d_{0}.objsubid = {2}".format(alias, catalog, subid))


QUERIES = {
    "schemas": """
        SELECT n.nspname, d_n.description
          FROM pg_namespace n {c}
         WHERE {ns} AND {ext}
    """.format(c=_comment("n", "pg_namespace"), ns=_NS_FILTER, ext=_not_extension_member("n", "pg_namespace")),
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.reltuples::float8,
               c.relpages::bigint * current_setting('block_size')::bigint,
               c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
               CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
               c.relispartition,
               (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
                  JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition),
               (SELECT quote_ident(pn.nspname) || '.' || quote_ident(pc.relname) FROM pg_inherits i
                  JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                 WHERE i.inhrelid = c.oid AND c.relispartition),
               CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
               d_c.description
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {c}
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {ns} AND {ext}
    """.format(c=_comment("c", "pg_class"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "columns": """
        SELECT n.nspname, c.relname, c.relkind, a.attname,
               row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
               CASE WHEN a.attcollation <> t.typcollation THEN co.collname END,
               d_a.description
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
          LEFT JOIN pg_collation co ON co.oid = a.attcollation
          LEFT JOIN pg_description d_a ON d_a.objoid = a.attrelid AND d_a.classoid = 'pg_class'::regclass
                                      AND d_a.objsubid = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
           AND {ns} AND {ext}
         ORDER BY a.attrelid, a.attnum
    """.format(ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "constraints": """
        SELECT n.nspname, c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid),
               con.condeferrable, con.condeferred, con.convalidated,
               ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord)::text[],
               CASE WHEN con.contype = 'f' THEN quote_ident(fn.nspname) || '.' || quote_ident(fc.relname) END,
               ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord)::text[],
               con.confupdtype, con.confdeltype, con.confmatchtype, d_con.description
          FROM pg_constraint con
          JOIN pg_class c ON c.oid = con.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_class fc ON fc.oid = con.confrelid
          LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
          {c}
         WHERE con.conrelid <> 0 AND con.conparentid = 0 AND {ns} AND {ext}
    """.format(c=_comment("con", "pg_constraint"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "indexes": """
        SELECT n.nspname, ic.relname, c.relname, am.amname, i.indisunique, i.indisprimary,
               i.indisvalid, i.indisready, i.indnkeyatts,
               ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) k)::text[],
               pg_get_expr(i.indpred, i.indrelid, true),
               pg_get_indexdef(i.indexrelid), quote_ident(ic.relname),
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                          AND k.contype IN ('p', 'u', 'x')),
               d_ic.description
          FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_am am ON am.oid = ic.relam
          {c}
         WHERE c.relkind IN ('r', 'p', 'm', 'f') AND NOT ic.relispartition AND {ns} AND {ext}
    """.format(c=_comment("ic", "pg_class"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
               CASE WHEN p.prokind IN ('f', 'w') THEN pg_get_function_result(p.oid) END,
               l.lanname, p.provolatile, p.prosecdef, p.proisstrict, p.proconfig,
               encode(sha256(convert_to(coalesce(p.prosrc, '') || coalesce('/*bin*/' || p.probin, ''), 'UTF8')), 'hex'),
               d_p.description
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_language l ON l.oid = p.prolang
          {c}
         WHERE {ns} AND {ext}
    """.format(c=_comment("p", "pg_proc"), ns=_NS_FILTER, ext=_not_extension_member("p", "pg_proc")),
    "triggers": """
        SELECT n.nspname, c.relname, t.tgname,
               pg_get_triggerdef(t.oid), quote_ident(t.tgname),
               t.tgenabled, d_t.description
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND {ns} AND {ext}
    """.format(c=_comment("t", "pg_trigger"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "sequences": """
        SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
               s.seqmax, s.seqcache, s.seqcycle,
               (SELECT quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) || '.' || quote_ident(ta.attname)
                  FROM pg_depend dep JOIN pg_class tc ON tc.oid = dep.refobjid
                  JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                  JOIN pg_attribute ta ON ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid
                 WHERE dep.classid = 'pg_class'::regclass AND dep.objid = c.oid AND dep.deptype IN ('a', 'i')
                   AND dep.refclassid = 'pg_class'::regclass LIMIT 1),
               EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
                          AND dep.deptype = 'i'),
               d_c.description
          FROM pg_sequence s
          JOIN pg_class c ON c.oid = s.seqrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE {ns} AND {ext}
    """.format(c=_comment("c", "pg_class"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "extensions": """
        SELECT x.extname, x.extversion, n.nspname, d_x.description
          FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
          {c}
         WHERE x.extname <> 'plpgsql'
    """.format(c=_comment("x", "pg_extension")),
    "enums": """
        SELECT n.nspname, t.typname,
               ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)::text[],
               d_t.description
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          {c}
         WHERE t.typtype = 'e' AND {ns} AND {ext}
    """.format(c=_comment("t", "pg_type"), ns=_NS_FILTER, ext=_not_extension_member("t", "pg_type")),
    "domains": """
        SELECT n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
               CASE WHEN t.typcollation <> bt.typcollation THEN co.collname END,
               ARRAY(SELECT k.conname || ': ' || pg_get_constraintdef(k.oid) FROM pg_constraint k
                      WHERE k.contypid = t.oid ORDER BY k.conname)::text[],
               d_t.description
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          JOIN pg_type bt ON bt.oid = t.typbasetype
          LEFT JOIN pg_collation co ON co.oid = t.typcollation
          {c}
         WHERE t.typtype = 'd' AND {ns} AND {ext}
    """.format(c=_comment("t", "pg_type"), ns=_NS_FILTER, ext=_not_extension_member("t", "pg_type")),
    "policies": """
        SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END
                       FROM unnest(p.polroles) r ORDER BY 1)::text[],
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), d_p.description
          FROM pg_policy p
          JOIN pg_class c ON c.oid = p.polrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE {ns}
    """.format(c=_comment("p", "pg_policy"), ns=_NS_FILTER),
}


def qname(*parts):
    """Quoted qualified name: ``"schema"."table"`` or ``"schema"."table"."column"``."""
    return ".".join(quote_ident(p) for p in parts)


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
        for depth in range(1, len(names) + 1):
            text = plain_name(schema, *names[:depth])
            if any(fnmatch.fnmatchcase(text, pattern) for pattern in self.patterns):
                return True
        return False


def _without_name(definition, keyword, quoted_name):
    """'CREATE INDEX ON ...' from 'CREATE INDEX "my idx" ON ...': definitions compare without their name."""
    return (definition or "").replace(keyword + quoted_name + " ", keyword, 1)


def _pin_settings(cur):
    for name, value in PINNED_SETTINGS:
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))


def _rows(cur, kind, ignore_schemas):
    cur.execute(QUERIES[kind], {"ignore": list(ignore_schemas)})
    return cur.fetchall()


def take_snapshot(cur, ignore_schemas=DEFAULT_IGNORE_SCHEMAS, ignore_patterns=()):
    """Snapshot the schema of the database ``cur`` is connected to.

    ``ignore_schemas``: schema names left out (default: the product's own schemas and the system
    schemas; system schemas are always left out).  ``ignore_patterns``: fnmatch patterns on the
    unquoted ``schema.name`` of an object (``schema.table.name`` for a table's constraints, indexes,
    triggers, policies and columns); an ignored table takes its columns, constraints, indexes,
    triggers and policies with it.

    Issues only SELECT and transaction-local set_config: safe in a READ ONLY transaction.  The
    pinned settings last until the caller's transaction ends.
    """
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
            snap["schemas"][quote_ident(schema)] = {"name": schema, "comment": comment}

    for (schema, name, relkind, persistence, reltuples, est_bytes, rls, rls_forced, options, partkey,
         is_partition, parent_plain, parent, bound, viewdef, comment) in _rows(cur, "relations", ignore_schemas):
        if flt.ignored(schema, name):
            continue
        key = qname(schema, name)
        if relkind in ("v", "m"):
            snap["views"][key] = {"schema": schema, "name": name, "kind": RELKIND[relkind],
                                  "definition": " ".join((viewdef or "").split()), "comment": comment,
                                  "columns": {}}
            continue
        del parent_plain
        snap["tables"][key] = {
            "schema": schema, "name": name, "kind": RELKIND[relkind],
            "persistence": {"p": "permanent", "u": "unlogged", "t": "temporary"}.get(persistence, persistence),
            "partition_key": partkey, "partition_of": parent if is_partition else None,
            "partition_bound": bound, "rls_enabled": bool(rls), "rls_forced": bool(rls_forced),
            "options": sorted(options or []), "comment": comment, "columns": {},
            "reltuples": max(reltuples or 0.0, 0.0), "estimated_bytes": int(est_bytes or 0),
        }

    for (schema, name, relkind, column, position, typ, notnull, default, identity, generated, collation,
         comment) in _rows(cur, "columns", ignore_schemas):
        owner = snap["views" if relkind in ("v", "m") else "tables"].get(qname(schema, name))
        if owner is None or flt.ignored(schema, name, column):
            continue
        owner["columns"][column] = {
            "position": int(position), "type": typ, "not_null": bool(notnull), "default": default,
            "identity": {"a": "always", "d": "by default"}.get(identity or ""),
            "generated": "stored" if generated == "s" else None,
            "collation": collation, "comment": comment,
        }

    for (schema, table, name, contype, definition, deferrable, deferred, validated, columns, ref_table,
         ref_columns, upd, dele, match, comment) in _rows(cur, "constraints", ignore_schemas):
        if qname(schema, table) not in snap["tables"] or flt.ignored(schema, table, name):
            continue
        item = {"schema": schema, "table": qname(schema, table), "name": name, "type": CONTYPE.get(contype, contype),
                "definition": definition, "columns": list(columns or []), "deferrable": bool(deferrable),
                "initially_deferred": bool(deferred), "validated": bool(validated), "comment": comment}
        if contype == "f":
            item.update({"references": ref_table, "ref_columns": list(ref_columns or []),
                         "on_update": FK_ACTION.get(upd, upd), "on_delete": FK_ACTION.get(dele, dele),
                         "match": FK_MATCH.get(match, match)})
        snap["constraints"][qname(schema, table, name)] = item

    for (schema, name, table, method, unique, primary, valid, ready, nkey, all_keys, predicate, definition, quoted,
         backs_constraint, comment) in _rows(cur, "indexes", ignore_schemas):
        parent = qname(schema, table)
        if (parent not in snap["tables"] and parent not in snap["views"]) or flt.ignored(schema, table, name):
            continue
        keys = list(all_keys or [])
        snap["indexes"][qname(schema, name)] = {
            "schema": schema, "table": parent, "name": name, "method": method, "unique": bool(unique),
            "primary": bool(primary), "valid": bool(valid and ready), "keys": keys[:nkey], "include": keys[nkey:],
            "predicate": predicate, "definition": _without_name(definition, "INDEX ", quoted),
            "constraint_backed": bool(backs_constraint),
            "comment": comment,
        }

    for (schema, name, args, prokind, result, language, volatility, secdef, strict, config, body_sha,
         comment) in _rows(cur, "functions", ignore_schemas):
        if flt.ignored(schema, name):
            continue
        snap["functions"]["{0}({1})".format(qname(schema, name), args)] = {
            "schema": schema, "name": name, "arguments": args, "kind": PROKIND.get(prokind, prokind),
            "result": result, "language": language, "volatility": VOLATILITY.get(volatility, volatility),
            "security_definer": bool(secdef), "strict": bool(strict), "config": sorted(config or []),
            "body_sha256": body_sha, "comment": comment,
        }

    for schema, table, name, definition, quoted, enabled, comment in _rows(cur, "triggers", ignore_schemas):
        parent = qname(schema, table)
        if (parent not in snap["tables"] and parent not in snap["views"]) or flt.ignored(schema, table, name):
            continue
        snap["triggers"][qname(schema, table, name)] = {
            "schema": schema, "table": parent, "name": name, "definition": _without_name(definition, "TRIGGER ", quoted),
            "enabled": {"O": "origin", "D": "disabled", "R": "replica", "A": "always"}.get(enabled, enabled),
            "comment": comment}

    for (schema, name, typ, start, inc, smin, smax, cache, cycle, owned_by, identity,
         comment) in _rows(cur, "sequences", ignore_schemas):
        if identity or flt.ignored(schema, name):
            continue  # identity sequences belong to their column (columns[].identity)
        snap["sequences"][qname(schema, name)] = {
            "schema": schema, "name": name, "type": typ, "start": start, "increment": inc, "min": smin,
            "max": smax, "cache": cache, "cycle": bool(cycle), "owned_by": owned_by, "comment": comment}

    for name, version, schema, comment in _rows(cur, "extensions", ignore_schemas):
        snap["extensions"][quote_ident(name)] = {"name": name, "version": version, "schema": schema,
                                                 "comment": comment}

    for schema, name, labels, comment in _rows(cur, "enums", ignore_schemas):
        if not flt.ignored(schema, name):
            snap["enums"][qname(schema, name)] = {"schema": schema, "name": name, "labels": list(labels or []),
                                                  "comment": comment}

    for schema, name, base, notnull, default, collation, checks, comment in _rows(cur, "domains", ignore_schemas):
        if not flt.ignored(schema, name):
            snap["domains"][qname(schema, name)] = {
                "schema": schema, "name": name, "base_type": base, "not_null": bool(notnull), "default": default,
                "collation": collation, "constraints": list(checks or []), "comment": comment}

    for schema, table, name, cmd, permissive, roles, qual, check, comment in _rows(cur, "policies", ignore_schemas):
        parent = qname(schema, table)
        if parent not in snap["tables"] or flt.ignored(schema, table, name):
            continue
        snap["policies"][qname(schema, table, name)] = {
            "schema": schema, "table": parent, "name": name, "command": POLCMD.get(cmd, cmd),
            "permissive": bool(permissive), "roles": list(roles or []), "using": qual, "with_check": check,
            "comment": comment}
    return snap


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
