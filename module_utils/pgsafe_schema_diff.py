# -*- coding: utf-8 -*-
"""Compare two schema snapshots (module_utils/pgsafe_snapshot.py) and classify every difference.

Direction: ``left`` is the database that would be changed (the actual one), ``right`` the state
wanted (e.g. what the code expects).  "missing" means in right and not in left (fixing it is a
CREATE), "extra" means in left and not in right (fixing it is a DROP).  The hazard of each
difference is the cost of making left look like right:

    {rewrite: bool, scan: bool, lock: "ACCESS EXCLUSIVE" | ... | None, data_loss: bool,
     cast_may_fail: bool, note: str}

Severity: ``blocking`` (the code breaks or integrity is missing: types, nullability, missing
tables/columns/keys), ``warning`` (worth fixing, the code keeps working: extra objects, indexes,
defaults of nullable columns), ``info`` (cosmetic: comments, column order, extension versions).

Column order differences are reported apart (kind ``column_order``, severity info) with what a
rebuild would cost.  Comments are compared on every object kind.

Plain Python; no Ansible import, no database.
"""
from __future__ import annotations

import re

from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS
from ansible.module_utils.pgsafe_schema_diff_objects import (AE, COMMENT_LOCK, attribute_differences,
                                                             comment_difference, difference, domain_diffs, enum_diffs,
                                                             extension_diffs, function_diffs, hazard, object_keys,
                                                             presence_difference, sequence_diffs,
                                                             trigger_and_policy_diffs, view_diffs)
from ansible.module_utils.pgsafe_sizes import human_bytes
from ansible.module_utils.pgsafe_snapshot import check_snapshot, filter_snapshot

SEVERITY_ORDER = {"blocking": 0, "warning": 1, "info": 2}
KIND_ORDER = {kind: i for i, kind in enumerate(("schema", "extension", "table", "column", "column_order", "constraint",
                                                 "index", "view", "function", "trigger", "sequence", "enum",
                                                 "domain", "policy"))}
VOLATILE_DEFAULTS = ("gen_random_uuid", "uuid_generate", "random(", "nextval(", "clock_timestamp", "timeofday")
TEXT_TYPES = ("text", "character varying")
TABLE_ATTRIBUTES = ("kind", "persistence", "partition_key", "partition_of", "partition_bound", "rls_enabled",
                    "rls_forced", "options")
INT_RANK = {"smallint": 1, "integer": 2, "bigint": 3}
_TYPE_RE = re.compile(r"^(?P<base>.*?)(?:\((?P<mods>[^()]*)\))?(?P<array>(\[\])*)$")
_CONSTRAINT_TAIL = re.compile(r"( DEFERRABLE)?( INITIALLY (DEFERRED|IMMEDIATE))?( NOT VALID)?$")


# --------------------------------------------------------------------------- small helpers
def table_size_text(table):
    """'~134 rows, ~16.0 kB' from a snapshot table (estimates: reltuples and relpages)."""
    if not table:
        return "size unknown"
    rows = table.get("reltuples")
    size = table.get("estimated_bytes")
    if rows is None and size is None:
        return "size unknown"
    return "~{0} rows, ~{1}".format(int(rows or 0), human_bytes(size or 0))


def holds_data(table):
    """True unless the statistics say the table is empty and unwritten (never analyzed: assume it holds data)."""
    if not table.get("analyzed", True):
        return True
    return bool(table.get("reltuples") or table.get("live_rows") or table.get("writes"))


def table_activity_text(table):
    """'~621 rows, ~96.0 kB, 671 row writes since the statistics were reset' (estimates and statistics)."""
    text = table_size_text(table)
    if not table.get("analyzed", True):
        text += ", never analyzed: the row estimate means nothing"
    if "writes" in table:
        text += ", {0} row writes since the statistics were reset".format(table.get("writes") or 0)
    return text


def _extra_table_diff(key, table):
    """A live table the code does not declare: something to investigate, never something to drop."""
    activity = table_activity_text(table)
    if holds_data(table):
        note = ("not in the code: investigate before changing anything ({0}). Who reads or writes it? (legacy_audit.yml "
                "samples its activity over a window.) It holds data or is written: keep it; never drop it. If it is "
                "proven unused, retire it (moved to pgsafe_quarantine with a verified backup, restorable)").format(
                    activity)
        summary = "table not in the code: investigate (holds data)"
    else:
        note = ("not in the code, empty and unwritten ({0}): a candidate for retirement (table_cleanup moves it to "
                "pgsafe_quarantine, restorable for the retention period) once nothing is found to use it").format(
                    activity)
        summary = "table not in the code: investigate (empty)"
    return difference("table", key, "presence", _brief_table(table), None, "warning", hazard(note=note), summary)


def _extra_schema_diff(key, schema, tables):
    """A schema the code does not declare: investigate who uses it; never drop tables with data blindly."""
    inside = [t for t in tables.values() if t["schema"] == schema["name"]]
    with_data = [t for t in inside if holds_data(t)]
    note = "not in the code: investigate who uses it (functions, roles, an auth provider, extensions) before changing " \
           "anything; {0} table(s) in it".format(len(inside))
    if with_data:
        note += ", {0} with data ({1}): never drop it blindly".format(
            len(with_data), "; ".join("{0}: {1}".format(t["name"], table_activity_text(t)) for t in with_data[:5]))
    note += ". If it is proven unused, remove it through schema removal (a restore-tested backup of the schema " \
            "first; restorable from it)"
    return difference("schema", key, "presence", "schema", None, "warning", hazard(note=note),
                 "schema not in the code: investigate")


_NOW_SPELLINGS = frozenset(("now()", "CURRENT_TIMESTAMP", "transaction_timestamp()"))


def normalize_default(text):
    """A column default as compared: spellings the catalogs keep apart for the same value are one.

    ``now()``, ``CURRENT_TIMESTAMP`` and ``transaction_timestamp()`` are the same function (the start of the
    transaction); white space is folded.
    """
    if text is None:
        return None
    text = " ".join(text.split())
    return "now()" if text in _NOW_SPELLINGS else text


def split_type(text):
    """('character varying', [255], '') from 'character varying(255)'; mods None when absent."""
    match = _TYPE_RE.match(text.strip())
    base, mods, array = match.group("base").strip(), match.group("mods"), match.group("array") or ""
    if mods is not None:
        try:
            mods = [int(m) for m in mods.split(",")]
        except ValueError:
            base, mods = text.strip(), None
    # "timestamp(3) without time zone": modifiers in the middle
    base = re.sub(r"\(\d+\)", "", base).strip()
    return base, mods, array


def type_change_hazard(old, new, table=None, column="col"):
    """Hazard of ALTER COLUMN ... TYPE ``new`` on a column of type ``old`` (``table``: left snapshot table)."""
    size = table_size_text(table)
    ob, om, oa = split_type(old)
    nb, nm, na = split_type(new)
    rewrite_note = "rewrites the table ({0}) and rebuilds its indexes under ACCESS EXCLUSIVE".format(size)
    if oa != na:
        return hazard(True, AE, cast_may_fail=True, note=rewrite_note + "; array dimension changes: needs USING")
    if ob == nb == "character varying" or (ob == nb and ob in ("bit varying", "numeric", "character")):
        if nm is None or (om is not None and ob != "numeric" and nm[0] >= om[0]) or (
                ob == "numeric" and om is not None and len(nm) == len(om) and nm[0] >= om[0] and nm[1:] == om[1:]):
            return hazard(False, AE, note="catalog-only: the limit is widened, no rewrite, brief ACCESS EXCLUSIVE")
        return hazard(True, AE, scan=True, cast_may_fail=True,
                      note=rewrite_note + "; values over the new limit make it fail: check max(length) first")
    if ob in TEXT_TYPES and nb in TEXT_TYPES:
        if nm is None:
            return hazard(False, AE, note="binary-compatible: catalog-only, brief ACCESS EXCLUSIVE")
        return hazard(True, AE, scan=True, cast_may_fail=True,
                      note=rewrite_note + "; values longer than {0} make it fail: check max(length) first".format(nm[0]))
    if {ob, nb} == {"timestamp without time zone", "timestamp with time zone"}:
        return hazard(True, AE, note="rewrites the table ({0}) unless the session TimeZone is UTC (PG 12+); values "
                                     "are reinterpreted in the session time zone".format(size))
    if ob in INT_RANK and nb in INT_RANK:
        widening = INT_RANK[nb] > INT_RANK[ob]
        return hazard(True, AE, cast_may_fail=not widening,
                      note=rewrite_note + ("" if widening else "; values out of range make it fail"))
    if nb in TEXT_TYPES:
        may_fail = nm is not None
        return hazard(True, AE, cast_may_fail=may_fail,
                      note=rewrite_note + ("; values longer than {0} make it fail".format(nm[0]) if may_fail else ""))
    if ob in TEXT_TYPES:
        return hazard(True, AE, scan=True, cast_may_fail=True,
                      note=rewrite_note + "; needs USING {0}::{1}: every value must be castable (check the real data "
                                          "first: empty strings, malformed values)".format(column, new))
    if {ob, nb} == {"json", "jsonb"}:
        return hazard(True, AE, note=rewrite_note + "; jsonb drops duplicate keys and key order" if nb == "jsonb"
                      else rewrite_note)
    return hazard(True, AE, cast_may_fail=True, note=rewrite_note + "; a USING clause may be needed and the cast may "
                                                                     "fail on some values")


def _is_volatile_default(default):
    return bool(default) and any(v in default for v in VOLATILE_DEFAULTS)


def normalize_constraint_definition(definition):
    """pg_get_constraintdef without DEFERRABLE/INITIALLY/NOT VALID (compared as attributes of their own)."""
    return _CONSTRAINT_TAIL.sub("", definition or "").strip()


# --------------------------------------------------------------------------- per kind
def _brief_table(t):
    return "{0} ({1} columns)".format(t["kind"], len(t["columns"]))


def _column_diffs(tkey, ltable, rtable):
    out = []
    lcols, rcols = ltable["columns"], rtable["columns"]
    if lcols == rcols:
        return out
    for name in list(rcols) + [c for c in lcols if c not in rcols]:
        lc, rc = lcols.get(name), rcols.get(name)
        obj = "{0}.{1}".format(tkey, '"' + name.replace('"', '""') + '"')
        if lc is None:
            volatile = _is_volatile_default(rc.get("default"))
            fails = rc["not_null"] and not rc.get("default") and not rc.get("identity") and not rc.get("generated")
            note = ("ADD COLUMN: " + ("rewrites the table ({0}): volatile default".format(table_size_text(ltable))
                                      if volatile or rc.get("generated") else "catalog-only, brief ACCESS EXCLUSIVE"))
            if fails:
                note += "; NOT NULL without a default fails on a non-empty table: add nullable, backfill, then SET NOT NULL"
            out.append(difference("column", obj, "presence", None, rc["type"], "blocking",
                             hazard(volatile or bool(rc.get("generated")), AE, cast_may_fail=fails, note=note),
                             "column missing (in right only)"))
            continue
        if rc is None:
            breaks_inserts = lc["not_null"] and not lc.get("default") and not lc.get("identity") and not lc.get("generated")
            out.append(difference("column", obj, "presence", lc["type"], None, "blocking" if breaks_inserts else "warning",
                             hazard(False, AE, data_loss=True,
                                    note="not in the code: investigate before changing it; DROP COLUMN would lose its "
                                         "data ({0}): back it up first{1}".format(
                                        table_size_text(ltable),
                                        "; NOT NULL without default: inserts that do not know this column fail"
                                        if breaks_inserts else "")),
                             "column not in the code (in left only)"))
            continue
        if lc.get("default") != rc.get("default") and normalize_default(lc.get("default")) == normalize_default(
                rc.get("default")):
            lc = dict(lc, default=rc.get("default"))  # the same default, spelled another way
        out += attribute_differences("column", obj, lc, rc, ("type", "not_null", "default", "identity", "generated", "collation"),
                           lambda attr, lv, rv, lc=lc, rc=rc, name=name: _classify_column(attr, lv, rv, lc, rc, ltable, name))
        out += comment_difference("column", obj, lc.get("comment"), rc.get("comment"))
    return out


def _classify_column(attr, lval, rval, lcol, rcol, ltable, name):
    if attr == "type":
        return "blocking", type_change_hazard(lval, rval, ltable, '"' + name.replace('"', '""') + '"')
    if attr == "not_null":
        if rval:
            return "blocking", hazard(False, AE, scan=True, cast_may_fail=True, note=(
                "SET NOT NULL scans the table ({0}) under ACCESS EXCLUSIVE and fails if a NULL exists; add CHECK (col IS "
                "NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL skips the scan (PG 12+)").format(
                    table_size_text(ltable)))
        return "blocking", hazard(False, AE, note="DROP NOT NULL: catalog-only; until then inserts of NULL fail")
    if attr == "default":
        missing_needed = rval is not None and lval is None and rcol.get("not_null")
        return ("blocking" if missing_needed else "warning"), hazard(False, AE, note=(
            "SET/DROP DEFAULT: catalog-only, brief ACCESS EXCLUSIVE; existing rows are not changed" +
            ("; inserts that omit this NOT NULL column fail until the default exists" if missing_needed else "")))
    if attr == "identity":
        return "blocking", hazard(False, AE, note="ADD/DROP IDENTITY: catalog-only; set the sequence past max(col)")
    if attr == "generated":
        if rval is None:
            return "blocking", hazard(False, AE, note="DROP EXPRESSION (PG 13+): keeps the stored values")
        return "blocking", hazard(True, AE, data_loss=True, note=(
            "a column becomes generated only by drop and re-add: rewrites the table ({0}), current values are "
            "replaced").format(table_size_text(ltable)))
    if attr == "collation":
        return "warning", hazard(False, AE, note="ALTER TYPE ... COLLATE: catalog change, indexes on the column are "
                                                 "rebuilt under ACCESS EXCLUSIVE")
    return "warning", hazard(lock=AE)  # pragma: no cover


def _classify_table_attr(ltable):
    size = table_size_text(ltable)

    def classify(attr, lval, rval):
        if attr in ("kind", "partition_key") and ltable.get("partition_key") and rval in (None, "table"):
            return "info", hazard(False, None, note=(
                "partitioned here ({0}), a plain table in the reference, which cannot declare partitioning: the "
                "same columns and rows, each partition's rows counted once through this table; nothing to "
                "change").format(ltable["partition_key"]))
        if attr in ("kind", "partition_key"):
            return "blocking", hazard(True, AE, note=(
                "a table becomes (un)partitioned or changes its partition key only by a rebuild: create the new "
                "table, copy ({0}), swap names under ACCESS EXCLUSIVE").format(size))
        if attr in ("partition_of", "partition_bound"):
            return "warning", hazard(False, AE, scan=True, note=(
                "DETACH/ATTACH PARTITION: attaching scans the partition ({0}) unless a matching CHECK constraint "
                "exists; ACCESS EXCLUSIVE on the partition, SHARE UPDATE EXCLUSIVE on the parent").format(size))
        if attr in ("rls_enabled", "rls_forced"):
            return "blocking", hazard(False, AE, note="ENABLE/DISABLE/FORCE ROW LEVEL SECURITY: catalog-only; changes "
                                                      "which rows the app sees")
        if attr == "persistence":
            return "warning", hazard(True, AE, note="SET LOGGED/UNLOGGED rewrites the table ({0})".format(size))
        return "info", hazard(False, AE, note="ALTER TABLE SET/RESET storage options: catalog-only")
    return classify


def _constraint_add_hazard(con, ltable):
    size = table_size_text(ltable)
    ctype = con.get("type")
    if ctype == "foreign key":
        return hazard(False, "SHARE ROW EXCLUSIVE", scan=True, note=(
            "ADD FOREIGN KEY validates every row ({0}) holding SHARE ROW EXCLUSIVE on both tables and fails on "
            "orphans; add it NOT VALID (brief lock), then VALIDATE CONSTRAINT (SHARE UPDATE EXCLUSIVE, writes go "
            "on)").format(size))
    if ctype in ("primary key", "unique"):
        return hazard(False, "SHARE", scan=True, note=(
            "builds a unique index ({0}) blocking writes and fails on duplicates{1}; build it with CREATE UNIQUE INDEX "
            "CONCURRENTLY then ADD CONSTRAINT ... USING INDEX").format(
                size, " or NULLs (primary key implies NOT NULL)" if ctype == "primary key" else ""))
    if ctype == "check":
        return hazard(False, AE, scan=True, note=(
            "ADD CHECK scans the table ({0}) under ACCESS EXCLUSIVE and fails on violating rows; add it NOT VALID, "
            "then VALIDATE CONSTRAINT (SHARE UPDATE EXCLUSIVE)").format(size))
    return hazard(False, AE, scan=True, note="ADD CONSTRAINT builds/checks against every row ({0})".format(size))


def _widened_by_partition_key(lc, rc, ltable):
    """A primary key / unique constraint of a partitioned table: the reference's columns, then partition key columns."""
    if lc.get("type") not in ("primary key", "unique") or not ltable.get("partition_key"):
        return False
    lcols, rcols = lc.get("columns") or [], rc.get("columns") or []
    return (len(lcols) > len(rcols) and lcols[:len(rcols)] == rcols
            and all(c in ltable["partition_key"] for c in lcols[len(rcols):]))


def _constraint_diffs(key, lc, rc, ltable, left_snap):
    del left_snap
    out = []
    if lc == rc:
        return out
    blocking = rc.get("type") in ("primary key", "unique", "foreign key")
    same = lc["definition"] == rc["definition"] or (
        normalize_constraint_definition(lc["definition"]) == normalize_constraint_definition(rc["definition"]))
    if lc.get("type") == rc.get("type") and not same and _widened_by_partition_key(lc, rc, ltable):
        out.append(difference("constraint", key, "definition", lc["definition"], rc["definition"], "info", hazard(
            note="the key also holds the partition key, as PostgreSQL requires on a partitioned table: the "
                 "reference's key columns stay unique within each partition"), "key includes the partition key"))
    elif lc.get("type") != rc.get("type") or not same:
        hz = _constraint_add_hazard(rc, ltable)
        hz["note"] = "drop and re-create: " + hz["note"]
        out.append(difference("constraint", key, "definition", lc["definition"], rc["definition"],
                         "blocking" if blocking else "warning", hz, "constraint definition differs"))
    if lc.get("validated") != rc.get("validated"):
        if rc.get("validated"):
            out.append(difference("constraint", key, "validated", False, True, "warning",
                             hazard(False, COMMENT_LOCK, scan=True, note=(
                                 "VALIDATE CONSTRAINT scans the table ({0}) under SHARE UPDATE EXCLUSIVE (writes go "
                                 "on) and fails on violating rows").format(table_size_text(ltable))),
                             "constraint is NOT VALID in left"))
        else:
            out.append(difference("constraint", key, "validated", True, False, "info", hazard(),
                             "constraint is NOT VALID in right only"))
    for attr in ("deferrable", "initially_deferred"):
        if lc.get(attr) != rc.get(attr):
            out.append(difference("constraint", key, attr, lc.get(attr), rc.get(attr), "warning",
                             hazard(False, AE if rc.get("type") != "foreign key" else "SHARE ROW EXCLUSIVE",
                                    note="ALTER CONSTRAINT (foreign keys) or drop and re-create (others)"),
                             "constraint {0} differs".format(attr)))
    out += comment_difference("constraint", key, lc.get("comment"), rc.get("comment"))
    return out


def _index_add_hazard(idx, ltable):
    return hazard(False, "SHARE", scan=True, cast_may_fail=bool(idx.get("unique")), note=(
        "CREATE INDEX reads the whole table ({0}) and blocks writes (SHARE); use CREATE INDEX CONCURRENTLY "
        "(SHARE UPDATE EXCLUSIVE, writes go on; check indisvalid afterwards){1}").format(
            table_size_text(ltable), "; fails on duplicates" if idx.get("unique") else ""))


def _paired_renames(kind, missing, extra, left_items, right_items, definition):
    """Objects present on both sides under different names (same table, same definition)."""
    renames, by_def = [], {}
    for key in extra:
        by_def.setdefault((left_items[key].get("table"), definition(left_items[key])), []).append(key)
    for key in list(missing):
        candidates = by_def.get((right_items[key].get("table"), definition(right_items[key])))
        if candidates:
            lkey = candidates.pop(0)
            missing.remove(key)
            extra.remove(lkey)
            renames.append(difference(kind, key, "name", left_items[lkey]["name"], right_items[key]["name"], "info",
                                 hazard(False, AE, note="RENAME: catalog-only, brief ACCESS EXCLUSIVE"),
                                 "{0} {1} exists under another name in left: {2} (same definition)".format(
                                     kind, right_items[key]["name"], left_items[lkey]["name"])))
    return renames


def _unique_key(table, columns):
    return table, tuple(columns)


def _plain_unique_index(idx):
    """(table, keys) of a unique index that a UNIQUE constraint could stand for, or None."""
    if (idx.get("unique") and not idx.get("primary") and idx.get("method") == "btree" and not idx.get("predicate")
            and not idx.get("include") and idx.get("valid", True)):
        return _unique_key(idx["table"], idx["keys"])
    return None


def _unique_equivalents(cmissing, cextra, imissing, iextra, lcons, rcons, lidx, ridx):
    """A unique index on one side and a UNIQUE constraint on the same keys on the other: the same guarantee.

    Paired items leave the missing/extra lists (updated in place) and come back as one info difference each.
    """
    out = []
    left_indexes = {}
    for key, idx in lidx.items():
        found = _plain_unique_index(idx)
        if found is not None:
            left_indexes.setdefault(found, []).append(key)
    for key in list(cmissing):
        con = rcons[key]
        if con.get("type") != "unique":
            continue
        candidates = left_indexes.get(_unique_key(con["table"], con["columns"]))
        if not candidates:
            continue
        lkey = candidates[0]
        cmissing.remove(key)
        if lkey in iextra:
            iextra.remove(lkey)
        out.append(difference("constraint", key, "unique_as_index", "unique index {0}".format(lidx[lkey]["name"]),
                         con["definition"], "info", hazard(note=(
                             "the same guarantee: a unique index enforces what the UNIQUE constraint declares (ON "
                             "CONFLICT works with either); only ON CONFLICT ON CONSTRAINT needs the constraint (ALTER "
                             "TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX, brief ACCESS EXCLUSIVE)")),
                         "a unique index where the right has a unique constraint on the same keys"))
    left_uniques = {}
    for key, con in lcons.items():
        if con.get("type") == "unique":
            left_uniques.setdefault(_unique_key(con["table"], con["columns"]), []).append(key)
    for key in list(imissing):
        found = _plain_unique_index(ridx[key])
        candidates = left_uniques.get(found) if found is not None else None
        if not candidates:
            continue
        lkey = candidates[0]
        imissing.remove(key)
        if lkey in cextra:
            cextra.remove(lkey)
        out.append(difference("index", key, "unique_as_constraint", "unique constraint {0}".format(lcons[lkey]["name"]),
                         ridx[key]["definition"], "info", hazard(note=(
                             "the same guarantee: the UNIQUE constraint's own index enforces what the unique index "
                             "declares")),
                         "a unique constraint where the right has a unique index on the same keys"))
    return out


# --------------------------------------------------------------------------- the diff
def diff_snapshots(left, right, ignore=None):
    """Every difference between two snapshots, column-order ones included (kind ``column_order``).

    ``ignore``: ``{"schemas": [...], "patterns": [...]}`` on top of the product schemas, which are
    always ignored.  Returns a list of dicts sorted by severity, kind and object::

        {kind, object, attribute, left, right, severity, hazard, summary}

    ``kind`` is one of schema, table, column, column_order, constraint, index, view, function, trigger,
    sequence, extension, enum, domain, policy; ``attribute`` is ``presence`` when the object exists on
    one side only (its absent side is None).
    """
    ignore = ignore or {}
    schemas = tuple(PRODUCT_SCHEMAS) + tuple(ignore.get("schemas") or ())
    patterns = tuple(ignore.get("patterns") or ())
    left = filter_snapshot(check_snapshot(left), schemas, patterns)
    right = filter_snapshot(check_snapshot(right), schemas, patterns)
    out = []

    both = {k for k in left["tables"] if k in right["tables"]}
    tables_and_views = both | {k for k in left["views"] if k in right["views"]}
    out = _schema_diffs(left, right) + extension_diffs(left, right) + _table_diffs(left, right)
    out += _constraint_and_index_diffs(left, right, both, tables_and_views)
    out += view_diffs(left, right) + function_diffs(left, right)
    out += trigger_and_policy_diffs(left, right, tables_and_views)
    out += sequence_diffs(left, right) + enum_diffs(left, right) + domain_diffs(left, right)
    return sort_differences(out)


def _schema_diffs(left, right):
    out = []
    # schemas
    for key in object_keys(left["schemas"], right["schemas"]):
        lo, ro = left["schemas"].get(key), right["schemas"].get(key)
        if lo is None:
            out += presence_difference("schema", key, lo, ro, "blocking", None, hazard(note="CREATE SCHEMA: no lock on existing "
                                                                                  "objects"), None, lambda o: "schema")
        elif ro is None:
            out.append(_extra_schema_diff(key, lo, left["tables"]))
        else:
            out += comment_difference("schema", key, lo.get("comment"), ro.get("comment"))
    return out


def _table_diffs(left, right):
    out = []
    # tables, columns, column order
    for key in object_keys(left["tables"], right["tables"]):
        lt, rt = left["tables"].get(key), right["tables"].get(key)
        if lt is None:
            out += presence_difference("table", key, lt, rt, "blocking", "warning",
                             hazard(note="CREATE TABLE: no lock on existing tables (FKs lock the referenced tables "
                                         "briefly)"), None, _brief_table)
            continue
        if rt is None:
            if lt.get("partition_of") not in right["tables"]:  # a partition of a table both sides have: its rows
                out.append(_extra_table_diff(key, lt))        # are that table's (never an extra table to drop)
            continue
        if lt is rt:  # the same object (read_snapshot_pair shares the objects equal on both sides)
            continue
        if any(lt.get(a) != rt.get(a) for a in TABLE_ATTRIBUTES):
            out += attribute_differences("table", key, lt, rt, TABLE_ATTRIBUTES, _classify_table_attr(lt))
        out += comment_difference("table", key, lt.get("comment"), rt.get("comment"))
        if lt["columns"] != rt["columns"]:
            out += _column_diffs(key, lt, rt)
            order = column_order_difference(key, lt, rt)
            if order:
                out.append(order)
    return out


def _constraint_and_index_diffs(left, right, both, lviews_tables):
    """Constraints (only on tables present on both sides: a missing table takes its constraints with it) and
    indexes (constraint-backed ones are covered by their constraint; their comments still compared)."""
    out = []
    lcons = {k: v for k, v in left["constraints"].items() if v["table"] in both}
    rcons = {k: v for k, v in right["constraints"].items() if v["table"] in both}
    missing = [k for k in rcons if k not in lcons]
    extra = [k for k in lcons if k not in rcons]
    out += _paired_renames("constraint", missing, extra, lcons, rcons,
                           lambda c: (c.get("type"), normalize_constraint_definition(c["definition"])))
    lidx = {k: v for k, v in left["indexes"].items() if v["table"] in lviews_tables}
    ridx = {k: v for k, v in right["indexes"].items() if v["table"] in lviews_tables}
    imissing = [k for k in ridx if k not in lidx and not ridx[k]["constraint_backed"]]
    iextra = [k for k in lidx if k not in ridx and not lidx[k]["constraint_backed"]]
    out += _paired_renames("index", imissing, iextra, lidx, ridx, lambda i: i["definition"])
    out += _unique_equivalents(missing, extra, imissing, iextra, lcons, rcons, lidx, ridx)
    for key in missing:
        con = rcons[key]
        out.append(difference("constraint", key, "presence", None, con["definition"],
                         "blocking" if con["type"] in ("primary key", "unique", "foreign key") else "warning",
                         _constraint_add_hazard(con, left["tables"][con["table"]]), "{0} missing".format(con["type"])))
    for key in extra:
        con = lcons[key]
        out.append(difference("constraint", key, "presence", con["definition"], None, "warning",
                         hazard(False, AE, note="DROP CONSTRAINT: catalog-only, brief ACCESS EXCLUSIVE; until then it "
                                                "may reject writes the code expects to succeed"),
                         "{0} extra".format(con["type"])))
    for key in sorted(key for key, con in lcons.items() if key in rcons and rcons[key] is not con):
        out += _constraint_diffs(key, lcons[key], rcons[key], left["tables"][lcons[key]["table"]], left)
    return out + _index_diffs(left, imissing, iextra, lidx, ridx)


def _index_diffs(left, missing, extra, lidx, ridx):
    out = []
    for key in missing:
        idx = ridx[key]
        out.append(difference("index", key, "presence", None, idx["definition"], "warning",
                         _index_add_hazard(idx, left["tables"].get(idx["table"])), "index missing"))
    for key in extra:
        idx = lidx[key]
        out.append(difference("index", key, "presence", idx["definition"], None, "info",
                         hazard(False, AE, note="DROP INDEX CONCURRENTLY avoids the ACCESS EXCLUSIVE lock; "
                                                "no data lost"), "index extra"))
    for key in sorted(key for key, idx in lidx.items() if key in ridx and ridx[key] is not idx):
        li, ri = lidx[key], ridx[key]
        if li == ri:
            continue
        if li["definition"] != ri["definition"] and not (li["constraint_backed"] and ri["constraint_backed"]):
            hz = _index_add_hazard(ri, left["tables"].get(ri["table"]))
            hz["note"] = "drop and re-create: " + hz["note"]
            out.append(difference("index", key, "definition", li["definition"], ri["definition"], "warning", hz,
                             "index definition differs"))
        if li["valid"] != ri["valid"] and ri["valid"]:
            out.append(difference("index", key, "valid", False, True, "warning",
                             _index_add_hazard(ri, left["tables"].get(ri["table"])),
                             "index is INVALID in left (a failed CREATE INDEX CONCURRENTLY): drop and rebuild"))
        out += comment_difference("index", key, li.get("comment"), ri.get("comment"))
    return out


def sort_differences(diffs):
    return sorted(diffs, key=lambda d: (SEVERITY_ORDER.get(d["severity"], 9), KIND_ORDER.get(d["kind"], 99),
                                        d["object"], d["attribute"]))


def column_order_difference(key, ltable, rtable):
    """The column_order entry of a table whose shared columns come in another order, or None."""
    lorder = [c for c, _ in sorted(ltable["columns"].items(), key=lambda kv: kv[1]["position"])
              if c in rtable["columns"]]
    rorder = [c for c, _ in sorted(rtable["columns"].items(), key=lambda kv: kv[1]["position"])
              if c in ltable["columns"]]
    if lorder == rorder:
        return None
    moved = [c for i, c in enumerate(lorder) if rorder[i] != c]
    size = table_size_text(ltable)
    note = ("cosmetic: column order changes no query that names its columns (only SELECT * and INSERT without a "
            "column list see it). Postgres cannot reorder columns in place: a rebuild means a copy of the whole "
            "table ({0}) under ACCESS EXCLUSIVE, plus re-creating its indexes, constraints, the foreign keys that "
            "point at it, and dependent views. Not worth it; left as is.").format(size)
    return difference("column_order", key, "order", lorder, rorder, "info",
                 hazard(True, AE, note=note),
                 "column order differs ({0} columns in another position)".format(len(moved)))


# --------------------------------------------------------------------------- result and rendering
def summarize(differences):
    """Split a diff_snapshots() result: {differences, column_order, counts, counts_by_kind, total}."""
    main = [d for d in differences if d["kind"] != "column_order"]
    order = [d for d in differences if d["kind"] == "column_order"]
    counts = {sev: 0 for sev in SEVERITY_ORDER}
    by_kind = {}
    for d in main:
        counts[d["severity"]] = counts.get(d["severity"], 0) + 1
        by_kind[d["kind"]] = by_kind.get(d["kind"], 0) + 1
    return {"differences": main, "column_order": order, "counts": counts, "counts_by_kind": by_kind,
            "total": len(main)}


__all__ = ["diff_snapshots", "summarize", "type_change_hazard", "column_order_difference",
           "normalize_constraint_definition", "hazard", "human_bytes"]
