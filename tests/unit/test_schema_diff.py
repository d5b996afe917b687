"""Schema diff and fingerprint logic, on hand-built snapshots (no database, no Ansible)."""
from __future__ import annotations

import copy
import json

import pytest

from ansible.module_utils.pgsafe_schema_diff import (column_order_difference, diff_snapshots,
                                                     normalize_constraint_definition, summarize, type_change_hazard)
from ansible.module_utils.pgsafe_schema_diff_render import flat_items, render_html, render_markdown
from ansible.module_utils.pgsafe_snapshot import (FORMAT_VERSION, KINDS, canonical, check_snapshot, filter_snapshot,
                                                  qname, schema_fingerprint)


def col(position, typ, not_null=False, default=None, comment=None, **kw):
    out = {"position": position, "type": typ, "not_null": not_null, "default": default, "identity": None,
           "generated": None, "collation": None, "comment": comment}
    out.update(kw)
    return out


def table(schema, name, columns, reltuples=1000.0, comment=None, **kw):
    out = {"schema": schema, "name": name, "kind": "table", "persistence": "permanent", "partition_key": None,
           "partition_of": None, "partition_bound": None, "rls_enabled": False, "rls_forced": False, "options": [],
           "comment": comment, "reltuples": reltuples, "estimated_bytes": 8192 * 100,
           "columns": {c: col(i + 1, *spec) if isinstance(spec, tuple) else dict(spec, position=i + 1)
                       for i, (c, spec) in enumerate(columns)}}
    out.update(kw)
    return out


def base():
    snap = {"format_version": FORMAT_VERSION, "meta": {"database": "x", "taken_at": "2026-01-01T00:00:00+00:00"}}
    for kind in KINDS:
        snap[kind] = {}
    snap["schemas"]['"public"'] = {"name": "public", "comment": "standard public schema"}
    snap["tables"][qname("public", "bazaar-vid_user")] = table("public", "bazaar-vid_user", [
        ("id", ("character varying(255)", True)), ("email", ("character varying(255)", True)),
        ("isAdmin", ("boolean", True, "false"))])
    snap["tables"][qname("public", "bazaar-vid_exports")] = table("public", "bazaar-vid_exports", [
        ("id", ("uuid", True, "gen_random_uuid()")), ("user_id", ("character varying(255)", True)),
        ("status", ("text", True, "'pending'::text")), ("note", ("text",))], reltuples=134.0)
    snap["constraints"][qname("public", "bazaar-vid_exports", "exports_pkey")] = {
        "schema": "public", "table": qname("public", "bazaar-vid_exports"), "name": "exports_pkey",
        "type": "primary key", "definition": "PRIMARY KEY (id)", "columns": ["id"], "deferrable": False,
        "initially_deferred": False, "validated": True, "comment": None}
    snap["constraints"][qname("public", "bazaar-vid_exports", "exports_user_fk")] = {
        "schema": "public", "table": qname("public", "bazaar-vid_exports"), "name": "exports_user_fk",
        "type": "foreign key", "definition": 'FOREIGN KEY (user_id) REFERENCES public."bazaar-vid_user"(id) ON DELETE '
                                             "CASCADE",
        "columns": ["user_id"], "deferrable": False, "initially_deferred": False, "validated": True, "comment": None,
        "references": qname("public", "bazaar-vid_user"), "ref_columns": ["id"], "on_update": "NO ACTION",
        "on_delete": "CASCADE", "match": "SIMPLE"}
    snap["indexes"][qname("public", "exports_pkey")] = {
        "schema": "public", "table": qname("public", "bazaar-vid_exports"), "name": "exports_pkey", "method": "btree",
        "unique": True, "primary": True, "valid": True, "keys": ["id"], "include": [], "predicate": None,
        "definition": 'CREATE UNIQUE INDEX ON public."bazaar-vid_exports" USING btree (id)', "constraint_backed": True,
        "comment": None}
    snap["indexes"][qname("public", "exports_user_idx")] = {
        "schema": "public", "table": qname("public", "bazaar-vid_exports"), "name": "exports_user_idx",
        "method": "btree", "unique": False, "primary": False, "valid": True, "keys": ["user_id"], "include": [],
        "predicate": None, "definition": 'CREATE INDEX ON public."bazaar-vid_exports" USING btree (user_id)',
        "constraint_backed": False, "comment": None}
    snap["functions"]['"public"."show_db_tree"()'] = {
        "schema": "public", "name": "show_db_tree", "arguments": "", "kind": "function", "result": "void",
        "language": "sql", "volatility": "stable", "security_definer": False, "strict": False, "config": [],
        "body_sha256": "ab" * 32, "comment": None}
    snap["views"][qname("public", "v")] = {"schema": "public", "name": "v", "kind": "view",
                                          "definition": "SELECT 1 AS one;", "comment": None,
                                          "columns": {"one": col(1, "integer")}}
    snap["sequences"][qname("public", "s")] = {"schema": "public", "name": "s", "type": "bigint", "start": 1,
                                              "increment": 1, "min": 1, "max": 9223372036854775807, "cache": 1,
                                              "cycle": False, "owned_by": None, "comment": None}
    snap["enums"][qname("public", "mood")] = {"schema": "public", "name": "mood", "labels": ["sad", "ok"],
                                             "comment": None}
    snap["domains"][qname("public", "posint")] = {"schema": "public", "name": "posint", "base_type": "integer",
                                                 "not_null": False, "default": None, "collation": None,
                                                 "constraints": ["posint_check: CHECK ((VALUE > 0))"], "comment": None}
    snap["triggers"][qname("public", "bazaar-vid_exports", "trg")] = {
        "schema": "public", "table": qname("public", "bazaar-vid_exports"), "name": "trg",
        "definition": "CREATE TRIGGER BEFORE UPDATE ...", "enabled": "origin", "comment": None}
    snap["policies"][qname("public", "bazaar-vid_exports", "own")] = {
        "schema": "public", "table": qname("public", "bazaar-vid_exports"), "name": "own", "command": "ALL",
        "permissive": True, "roles": ["PUBLIC"], "using": "true", "with_check": None, "comment": None}
    snap["extensions"]['"pgcrypto"'] = {"name": "pgcrypto", "version": "1.3", "schema": "public", "comment": None}
    return snap


def keys(diffs):
    return {(d["kind"], d["object"], d["attribute"]) for d in diffs}


EXPORTS = qname("public", "bazaar-vid_exports")


def test_identical_snapshots_have_no_difference():
    assert diff_snapshots(base(), base()) == []


@pytest.mark.parametrize(("old", "new", "rewrite", "may_fail"), [
    ("text", "uuid", True, True),
    ("character varying(100)", "character varying(255)", False, False),
    ("character varying(255)", "character varying(50)", True, True),
    ("character varying(255)", "text", False, False),
    ("character varying(255)", "character varying", False, False),
    ("text", "character varying(255)", True, True),
    ("integer", "bigint", True, False),
    ("bigint", "integer", True, True),
    ("uuid", "text", True, False),
    ("numeric(10,2)", "numeric(12,2)", False, False),
    ("numeric(10,2)", "numeric(10,3)", True, True),
    ("timestamp without time zone", "timestamp with time zone", True, False),
    ("text", "integer[]", True, True),
    ("jsonb", "uuid", True, True),
])
def test_type_change_hazard(old, new, rewrite, may_fail):
    hz = type_change_hazard(old, new, {"reltuples": 134.0, "estimated_bytes": 57344}, '"id"')
    assert (hz["rewrite"], hz["cast_may_fail"], hz["lock"]) == (rewrite, may_fail, "ACCESS EXCLUSIVE")
    if rewrite:
        assert "~134 rows" in hz["note"]


def test_text_to_uuid_column_is_blocking_rewrite_and_names_the_column():
    left = base()
    left["tables"][EXPORTS]["columns"]["id"]["type"] = "text"
    (d,) = diff_snapshots(left, base())
    assert (d["kind"], d["object"], d["attribute"], d["left"], d["right"], d["severity"]) == (
        "column", '"public"."bazaar-vid_exports"."id"', "type", "text", "uuid", "blocking")
    assert d["hazard"]["rewrite"] and d["hazard"]["cast_may_fail"] and not d["hazard"]["data_loss"]
    assert 'USING "id"::uuid' in d["hazard"]["note"]


def test_adding_not_null_scans_and_may_fail():
    left = base()
    left["tables"][EXPORTS]["columns"]["user_id"]["not_null"] = False
    (d,) = diff_snapshots(left, base())
    assert d["attribute"] == "not_null" and d["severity"] == "blocking"
    assert d["hazard"]["scan"] and d["hazard"]["cast_may_fail"] and not d["hazard"]["rewrite"]
    assert "NOT VALID" in d["hazard"]["note"]


def test_missing_default_on_not_null_column_is_blocking_otherwise_warning():
    left = base()
    left["tables"][EXPORTS]["columns"]["id"]["default"] = None
    left["tables"][EXPORTS]["columns"]["status"]["not_null"] = False
    right = base()
    right["tables"][EXPORTS]["columns"]["status"]["not_null"] = False
    right["tables"][EXPORTS]["columns"]["status"]["default"] = "'x'::text"
    by_obj = {(d["object"], d["attribute"]): d for d in diff_snapshots(left, right)}
    assert by_obj[(EXPORTS + '."id"', "default")]["severity"] == "blocking"
    assert by_obj[(EXPORTS + '."status"', "default")]["severity"] == "warning"


def test_missing_foreign_key_validates_with_scan_and_suggests_not_valid():
    left = base()
    del left["constraints"][qname("public", "bazaar-vid_exports", "exports_user_fk")]
    (d,) = diff_snapshots(left, base())
    assert (d["kind"], d["attribute"], d["left"], d["severity"]) == ("constraint", "presence", None, "blocking")
    assert d["hazard"]["lock"] == "SHARE ROW EXCLUSIVE" and d["hazard"]["scan"]
    assert "NOT VALID" in d["hazard"]["note"] and "VALIDATE" in d["hazard"]["note"]


def test_not_valid_constraint_is_reported_as_validated_only():
    left = base()
    con = left["constraints"][qname("public", "bazaar-vid_exports", "exports_user_fk")]
    con["validated"] = False
    con["definition"] += " NOT VALID"
    (d,) = diff_snapshots(left, base())
    assert (d["attribute"], d["left"], d["right"], d["severity"]) == ("validated", False, True, "warning")
    assert normalize_constraint_definition("CHECK ((a > 0)) DEFERRABLE INITIALLY DEFERRED NOT VALID") == "CHECK ((a > 0))"


def test_renamed_constraint_is_paired_not_reported_missing_and_extra():
    left = base()
    con = left["constraints"].pop(qname("public", "bazaar-vid_exports", "exports_user_fk"))
    left["constraints"][qname("public", "bazaar-vid_exports", "old_fk_name")] = dict(con, name="old_fk_name")
    (d,) = diff_snapshots(left, base())
    assert (d["kind"], d["attribute"], d["left"], d["right"], d["severity"]) == (
        "constraint", "name", "old_fk_name", "exports_user_fk", "info")


def test_missing_table_is_blocking_and_a_table_not_in_the_code_is_to_investigate_never_to_drop():
    left, right = base(), base()
    del left["tables"][EXPORTS]
    diffs = diff_snapshots(left, right)
    # the table's constraints, indexes, triggers and policies go with it: one difference
    assert keys(diffs) == {("table", EXPORTS, "presence")}
    (d,) = diffs
    assert d["severity"] == "blocking" and d["hazard"]["lock"] is None and not d["hazard"]["data_loss"]
    live = base()
    live["tables"][EXPORTS].update(live_rows=134, writes=671)
    (d,) = diff_snapshots(live, left)
    assert d["severity"] == "warning" and d["summary"] == "table not in the code: investigate (holds data)"
    assert not d["hazard"]["data_loss"] and d["hazard"]["lock"] is None
    note = d["hazard"]["note"]
    assert "~134 rows" in note and "671 row writes" in note and "never drop it" in note
    assert "DROP TABLE" not in note and "candidate for retirement" not in note


@pytest.mark.parametrize("stats, holds", [
    ({"reltuples": 0.0, "live_rows": 0, "writes": 0, "analyzed": True}, False),
    ({"reltuples": 0.0, "live_rows": 0, "writes": 3, "analyzed": True}, True),  # written, even if empty now
    ({"reltuples": 0.0, "live_rows": 0, "writes": 0, "analyzed": False}, True),  # no statistics: assume data
    ({"reltuples": 5.0, "live_rows": 0, "writes": 0, "analyzed": True}, True),
])
def test_only_an_empty_unwritten_table_not_in_the_code_is_a_retirement_candidate(stats, holds):
    live, code = base(), base()
    live["tables"][EXPORTS].update(stats)
    del code["tables"][EXPORTS]
    (d,) = diff_snapshots(live, code)
    assert ("candidate for retirement" in d["hazard"]["note"]) is not holds
    assert ("never drop it" in d["hazard"]["note"]) is holds


@pytest.mark.parametrize("live_default, code_default", [
    ("now()", "CURRENT_TIMESTAMP"), ("CURRENT_TIMESTAMP", "now()"), ("transaction_timestamp()", "now()")])
def test_equivalent_default_spellings_are_not_drift(live_default, code_default):
    live, code = base(), base()
    live["tables"][EXPORTS]["columns"]["created"] = col(5, "timestamp with time zone", True, live_default)
    code["tables"][EXPORTS]["columns"]["created"] = col(5, "timestamp with time zone", True, code_default)
    assert diff_snapshots(live, code) == []
    code["tables"][EXPORTS]["columns"]["created"]["default"] = "clock_timestamp()"  # another value: drift
    assert keys(diff_snapshots(live, code)) == {("column", EXPORTS + '."created"', "default")}


def _unique_index(name, table_key, keys, constraint_backed=False):
    return {"schema": "public", "table": table_key, "name": name, "method": "btree", "unique": True,
            "primary": False, "valid": True, "keys": list(keys), "include": [], "predicate": None,
            "definition": "CREATE UNIQUE INDEX ON {0} USING btree ({1})".format(table_key, ", ".join(keys)),
            "constraint_backed": constraint_backed, "comment": None}


def _unique_constraint(name, table_key, columns):
    return {"schema": "public", "table": table_key, "name": name, "type": "unique",
            "definition": "UNIQUE ({0})".format(", ".join(columns)), "columns": list(columns), "deferrable": False,
            "initially_deferred": False, "validated": True, "comment": None}


def test_unique_index_and_unique_constraint_on_the_same_keys_are_info_at_most():
    as_index, as_constraint = base(), base()
    as_index["indexes"][qname("public", "exports_render_uq")] = _unique_index("exports_render_uq", EXPORTS, ["status"])
    as_constraint["constraints"][qname("public", "bazaar-vid_exports", "exports_status_unique")] = _unique_constraint(
        "exports_status_unique", EXPORTS, ["status"])
    as_constraint["indexes"][qname("public", "exports_status_unique")] = _unique_index(
        "exports_status_unique", EXPORTS, ["status"], constraint_backed=True)
    for live, code in ((as_index, as_constraint), (as_constraint, as_index)):
        diffs = diff_snapshots(live, code)
        assert [d["severity"] for d in diffs] == ["info"], diffs
        assert diffs[0]["attribute"] in ("unique_as_index", "unique_as_constraint")
    # other keys: not the same guarantee, both sides reported
    as_index["indexes"][qname("public", "exports_render_uq")]["keys"] = ["user_id"]
    severities = sorted(d["severity"] for d in diff_snapshots(as_index, as_constraint))
    assert severities == ["blocking", "info"]  # the unique constraint missing; the other index extra


def test_extra_column_is_data_loss_and_blocking_when_not_null_without_default():
    left = base()
    left["tables"][EXPORTS]["columns"]["legacy"] = col(5, "text", True)
    left["tables"][EXPORTS]["columns"]["spare"] = col(6, "text")
    by_obj = {d["object"]: d for d in diff_snapshots(left, base())}
    assert by_obj[EXPORTS + '."legacy"']["severity"] == "blocking"
    assert by_obj[EXPORTS + '."spare"']["severity"] == "warning"
    assert all(d["hazard"]["data_loss"] for d in by_obj.values())


def test_missing_column_with_volatile_default_rewrites():
    left = base()
    right = base()
    right["tables"][EXPORTS]["columns"]["token"] = col(5, "uuid", True, "gen_random_uuid()")
    right["tables"][EXPORTS]["columns"]["flag"] = col(6, "boolean", True)
    by_obj = {d["object"]: d for d in diff_snapshots(left, right)}
    assert by_obj[EXPORTS + '."token"']["hazard"]["rewrite"]
    flag = by_obj[EXPORTS + '."flag"']
    assert not flag["hazard"]["rewrite"] and flag["hazard"]["cast_may_fail"]


def test_column_order_reported_apart_with_rebuild_cost_and_only_on_shared_columns():
    left = base()
    cols = left["tables"][EXPORTS]["columns"]
    cols["status"]["position"], cols["note"]["position"] = 4, 3
    diffs = diff_snapshots(left, base())
    (d,) = diffs
    assert (d["kind"], d["severity"], d["left"], d["right"]) == (
        "column_order", "info", ["id", "user_id", "note", "status"], ["id", "user_id", "status", "note"])
    assert d["hazard"]["rewrite"] and d["hazard"]["lock"] == "ACCESS EXCLUSIVE"
    assert "cosmetic" in d["hazard"]["note"] and "~134 rows" in d["hazard"]["note"]
    result = summarize(diffs)
    assert result["differences"] == [] and result["column_order"] == [d] and result["total"] == 0
    # a missing column alone does not make an order difference
    right = base()
    del right["tables"][EXPORTS]["columns"]["user_id"]
    for i, name in enumerate(right["tables"][EXPORTS]["columns"]):
        right["tables"][EXPORTS]["columns"][name]["position"] = i + 1
    assert column_order_difference(EXPORTS, base()["tables"][EXPORTS], right["tables"][EXPORTS]) is None


@pytest.mark.parametrize(("kind", "key", "path", "expected_kind"), [
    ("schemas", '"public"', (), "schema"),
    ("tables", EXPORTS, (), "table"),
    ("tables", EXPORTS, ("columns", "status"), "column"),
    ("constraints", qname("public", "bazaar-vid_exports", "exports_pkey"), (), "constraint"),
    ("indexes", qname("public", "exports_user_idx"), (), "index"),
    ("indexes", qname("public", "exports_pkey"), (), "index"),
    ("views", qname("public", "v"), (), "view"),
    ("views", qname("public", "v"), ("columns", "one"), "column"),
    ("functions", '"public"."show_db_tree"()', (), "function"),
    ("sequences", qname("public", "s"), (), "sequence"),
    ("enums", qname("public", "mood"), (), "enum"),
    ("domains", qname("public", "posint"), (), "domain"),
    ("triggers", qname("public", "bazaar-vid_exports", "trg"), (), "trigger"),
    ("policies", qname("public", "bazaar-vid_exports", "own"), (), "policy"),
    ("extensions", '"pgcrypto"', (), "extension"),
])
def test_comments_are_compared_on_every_kind(kind, key, path, expected_kind):
    left = base()
    obj = left[kind][key]
    for step in path:
        obj = obj[step]
    obj["comment"] = "hostile 'comment' with \"quotes\" and ünïcode"
    (d,) = diff_snapshots(left, base())
    assert (d["kind"], d["attribute"], d["severity"]) == (expected_kind, "comment", "info")
    assert d["left"] == obj["comment"] and d["right"] == (base()["schemas"]['"public"']["comment"]
                                                           if kind == "schemas" else None)


def test_index_differences():
    left = base()
    del left["indexes"][qname("public", "exports_user_idx")]
    (d,) = diff_snapshots(left, base())
    assert (d["kind"], d["severity"], d["hazard"]["lock"]) == ("index", "warning", "SHARE")
    assert "CONCURRENTLY" in d["hazard"]["note"]
    left = base()
    left["indexes"][qname("public", "exports_user_idx")]["valid"] = False
    (d,) = diff_snapshots(left, base())
    assert d["attribute"] == "valid"
    # a constraint-backed index is covered by its constraint
    left = base()
    del left["indexes"][qname("public", "exports_pkey")]
    assert diff_snapshots(left, base()) == []


def test_enum_labels_added_is_blocking_removed_is_warning():
    right = base()
    right["enums"][qname("public", "mood")]["labels"] = ["sad", "ok", "happy"]
    (d,) = diff_snapshots(base(), right)
    assert d["severity"] == "blocking" and not d["hazard"]["rewrite"]
    (d,) = diff_snapshots(right, base())
    assert d["severity"] == "warning" and d["hazard"]["rewrite"]


def test_product_schemas_and_ignore_rules():
    left = base()
    left["schemas"]['"pgsafe"'] = {"name": "pgsafe", "comment": None}
    left["tables"][qname("pgsafe", "run")] = table("pgsafe", "run", [("run_id", ("text", True))])
    left["tables"][qname("public", "tmp_x")] = table("public", "tmp_x", [("a", ("int",))])
    left["tables"][qname("scratch", "t")] = table("scratch", "t", [("a", ("int",))])
    assert keys(diff_snapshots(left, base())) == {("table", qname("public", "tmp_x"), "presence"),
                                                 ("table", qname("scratch", "t"), "presence")}
    assert diff_snapshots(left, base(), ignore={"schemas": ["scratch"], "patterns": ["public.tmp_*"]}) == []
    # a pattern on schema.table.name ignores one column
    left = base()
    left["tables"][EXPORTS]["columns"]["note"]["type"] = "character varying(10)"
    assert diff_snapshots(left, base(), ignore={"patterns": ["public.bazaar-vid_exports.note"]}) == []
    # patterns on a table take its constraints and indexes with it
    filtered = filter_snapshot(base(), ignore_patterns=["public.bazaar-vid_exports"])
    assert EXPORTS not in filtered["tables"] and not filtered["constraints"] and not filtered["policies"]


def test_fingerprint_ignores_volatile_data_and_product_schema():
    one, two = base(), base()
    two["meta"] = {"database": "other", "taken_at": "2030-01-01"}
    two["tables"][EXPORTS]["reltuples"] = 99999.0
    two["tables"][EXPORTS]["estimated_bytes"] = 1
    two["schemas"]['"pgsafe"'] = {"name": "pgsafe", "comment": None}
    two["tables"][qname("pgsafe_quarantine", "q")] = table("pgsafe_quarantine", "q", [("a", ("int",))])
    # insertion order of the document does not matter
    reordered = json.loads(json.dumps(two, sort_keys=True))
    fp = schema_fingerprint(one)
    assert len(fp) == 64 and fp == schema_fingerprint(two) == schema_fingerprint(reordered)
    changed = base()
    changed["tables"][EXPORTS]["columns"]["note"]["comment"] = "x"
    assert schema_fingerprint(changed) != fp
    moved = base()
    moved["tables"][EXPORTS]["columns"]["note"]["position"], moved["tables"][EXPORTS]["columns"]["status"]["position"] = 3, 4
    assert schema_fingerprint(moved) != fp
    assert "reltuples" not in canonical(one)["tables"][EXPORTS]
    assert one["tables"][EXPORTS]["reltuples"] == 134.0  # canonical() does not touch its input


def test_check_snapshot_rejects_foreign_documents():
    with pytest.raises(ValueError, match="format_version"):
        check_snapshot({"tables": {}})
    bad = base()
    bad["format_version"] = 99
    with pytest.raises(ValueError, match="not supported"):
        check_snapshot(bad)
    partial = base()
    del partial["policies"]
    with pytest.raises(ValueError, match="policies"):
        diff_snapshots(partial, base())


def test_renderings_escape_hostile_names():
    left, right = base(), copy.deepcopy(base())
    evil = 'x"</td><script>alert(1)</script>|'
    left["tables"][qname("public", evil)] = table("public", evil, [("a", ("int",))])
    result = summarize(diff_snapshots(left, right))
    page = render_html(result, "prod", "reference")
    assert "<script>" not in page and "&lt;script&gt;" in page
    text = render_markdown(result, "prod", "reference")
    assert "\\|" in text and "1 differences: 0 blocking, 1 warning, 0 info" in text
    (item,) = flat_items(result["differences"], "prod vs reference")
    assert item["comparison"] == "prod vs reference" and item["right"] == "(absent)" and "investigate" in item["note"]
    assert all(not isinstance(v, (dict, list)) for v in item.values())


def test_views_missing_extra_and_changed():
    left, right = base(), base()
    view = {"schema": "public", "name": "v", "kind": "view", "definition": "SELECT 1", "comment": None,
            "columns": {"a": {"comment": None}}}
    mat = dict(view, name="m", kind="materialized view")
    left["views"][qname("public", "only_left")] = dict(view, name="only_left")
    right["views"][qname("public", "m")] = mat
    right["views"][qname("public", "v")] = dict(view, definition="SELECT 2", columns={"a": {"comment": "the a"}})
    left["views"][qname("public", "v")] = view
    found = {(d["object"], d["attribute"]): d for d in diff_snapshots(left, right)}
    assert found[(qname("public", "only_left"), "presence")]["severity"] == "warning"
    assert "MATERIALIZED" in found[(qname("public", "m"), "presence")]["hazard"]["note"]
    assert found[(qname("public", "v"), "definition")]["right"] == "SELECT 2"
    assert found[(qname("public", "v") + '."a"', "comment")]["right"] == "the a"
