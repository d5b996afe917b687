"""The cleanup's deciding logic without a database: DDL extraction, mappings, verdicts, name handling."""
from __future__ import annotations

import pytest
from ansible.module_utils import pgsafe_audit as audit
from ansible.module_utils import pgsafe_merge as merge
from ansible.module_utils import pgsafe_merge_ddl as merge_ddl
from ansible.module_utils import pgsafe_retire as retire
from ansible.module_utils import pgsafe_schema_removal as removal

from tests.cleanup_helpers import DEV_MAP, REFERENCE_SQL


# --------------------------------------------------------------------------- DDL extraction
def test_reference_statements_for_the_metric_table_are_its_table_two_foreign_keys_and_five_indexes():
    stmts = merge_ddl.statements_for_table(REFERENCE_SQL, "bazaar-vid_api_usage_metric")
    assert stmts[0].startswith('CREATE TABLE "bazaar-vid_api_usage_metric"')
    added = [s for s in stmts[1:] if s.startswith('ALTER TABLE "bazaar-vid_api_usage_metric" ADD CONSTRAINT')]
    indexes = [s for s in stmts[1:] if 'ON "bazaar-vid_api_usage_metric"' in s and s.startswith("CREATE INDEX")]
    assert len(stmts) == 8 and len(added) == 2 and len(indexes) == 5
    assert not any("bazaar-vid_exports" in s for s in stmts)
    assert {(tuple(f["columns"]), f["ref_table"]) for f in merge_ddl.added_foreign_keys(stmts)} == {
        (("userId",), "bazaar-vid_user"), (("projectId",), "bazaar-vid_project")}


def test_missing_table_in_reference_is_an_error_naming_it():
    with pytest.raises(merge.MergeError, match="no CREATE TABLE for nope"):
        merge_ddl.statements_for_table(REFERENCE_SQL, "nope")


def test_split_statements_respects_quotes_dollar_quotes_and_comments():
    text = "CREATE TABLE \"a;b\" (x text DEFAULT 'c;d'); -- e;f\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;"
    assert merge_ddl.split_statements(text) == ["CREATE TABLE \"a;b\" (x text DEFAULT 'c;d')",
                                            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql"]


def test_parse_create_table_columns_keys_and_foreign_keys():
    parsed = merge_ddl.parse_create_table(merge_ddl.statements_for_table(REFERENCE_SQL, "bazaar-vid_api_usage_metric")[0])
    cols = {c["name"]: c for c in parsed["columns"]}
    assert parsed["primary_key"] == ["id"]
    assert cols["provider"] == {"name": "provider", "type": "character varying(50)", "not_null": True,
                                "has_default": False}
    assert cols["timestamp"]["type"] == "timestamp with time zone" and cols["timestamp"]["has_default"]
    assert cols["userId"]["not_null"] is False and cols["id"]["not_null"] is True
    inline = merge_ddl.parse_create_table(
        'CREATE TABLE "t" (id uuid PRIMARY KEY, "userId" varchar(255), '
        'CONSTRAINT "t_u_fk" FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user" (id))')
    assert [(f["columns"], f["ref_schema"], f["ref_table"], f["ref_columns"]) for f in inline["foreign_keys"]] == [
        (["userId"], "public", "bazaar-vid_user", ["id"])]


@pytest.mark.parametrize("given, canonical", [
    ("varchar(50)", "character varying(50)"), ("timestamptz", "timestamp with time zone"),
    ("timestamp(3)", "timestamp(3) without time zone"), ("int4", "integer"), ("jsonb", "jsonb"),
    ("numeric(8, 2)", "numeric(8,2)"), ("text[]", "text[]")])
def test_canonical_type_matches_format_type(given, canonical):
    assert merge_ddl.canonical_type(given) == canonical


# --------------------------------------------------------------------------- mapping
def _cols(*spec):
    return [{"name": n, "type": t, "not_null": nn, "has_default": d} for n, t, nn, d in spec]


def test_mapping_must_cover_every_source_column_and_required_target_columns():
    source = _cols(("id", "uuid", True, False), ("userId", "text", False, False), ("extra", "text", False, False))
    target = _cols(("id", "uuid", True, False), ("user_id", "text", False, False), ("model", "text", True, False),
                   ("ts", "timestamptz", True, True))
    problems = merge.validate_mapping(source, target, ["id"], [("id", "id"), ("userId", "user_id")])
    assert any("source column extra is not mapped" in p for p in problems)
    assert any("target column model is NOT NULL without a default" in p for p in problems)
    assert not any("column ts " in p for p in problems)  # has a default
    ok = merge.validate_mapping(source, target[:2], ["id"], [("id", "id"), ("userId", "user_id")],
                                drop_source_columns=["extra"])
    assert ok == []


def test_mapping_rejects_unknown_columns_duplicates_and_missing_key():
    with pytest.raises(merge.MergeError, match="several source columns onto id"):
        merge.normalize_mapping({"a": "id", "b": "id"})
    problems = merge.validate_mapping(_cols(("a", "int", False, False)), _cols(("b", "int", False, False)), [],
                                      [("zz", "b")])
    assert any("source column zz does not exist" in p for p in problems)
    assert any("no primary key" in p for p in problems)


def test_dev_mapping_is_complete_for_the_fixture_tables():
    pairs = merge.normalize_mapping(DEV_MAP)
    assert ("responseTime", "responseTime") in pairs and len(pairs) == 12
    assert merge.normalize_mapping([{"source": "a", "target": "b"}]) == [("a", "b")]


# --------------------------------------------------------------------------- retire decisions
def test_decide_empty_nonempty_blocked_converged():
    item = {"schema": "public", "name": "t", "expected_rows": 0}
    assert retire.decide(item, True, 0, [])[0] == "retire"
    action, why = retire.decide(item, True, 3, [])
    assert action == "skip" and "3 rows" in why
    assert retire.decide(dict(item, expected_rows=3), True, 3, [])[0] == "retire"
    dep = {"blocking": True, "description": "view v"}
    assert retire.decide(item, True, 0, [dep]) == ("blocked", "still needed by: view v")
    assert retire.decide(item, True, 0, [dict(dep, blocking=False)])[0] == "retire"
    record = {"quarantine_schema": "pgsafe_quarantine", "quarantine_name": "public_t", "quarantined_at": "x"}
    assert retire.decide(item, False, None, [], record)[0] == "converged"
    assert retire.decide(item, False, None, [], None)[0] == "absent"


def test_mentions_is_whole_identifier_and_case_insensitive():
    assert retire.mentions('SELECT count(*) FROM "bazaar-vid_patch"', "bazaar-vid_patch")
    assert retire.mentions("select * from Bazaar-Vid_Patch p", "bazaar-vid_patch")
    assert not retire.mentions('SELECT 1 FROM "bazaar-vid_patches"', "bazaar-vid_patch")
    assert not retire.mentions("SELECT 1 FROM x_bazaar-vid_patch", "bazaar-vid_patch")
    assert retire.like_pattern("a_b%c") == "%a\\_b\\%c%"


def test_quarantine_names_fit_and_never_collide():
    long = "bazaar-vid_" + "x" * 60
    first = retire.quarantine_name_for("public", long, set())
    second = retire.quarantine_name_for("public", long, {first})
    assert first != second and len(first.encode()) <= 63 and len(second.encode()) <= 63
    assert retire.quarantine_name_for("public", "t", set()) == "public_t"


def test_normalize_table_spec_forms():
    assert retire.normalize_table_spec("public.bazaar-vid_patch") == {"schema": "public", "name": "bazaar-vid_patch",
                                                                    "expected_rows": 0}
    assert retire.normalize_table_spec({"name": '"odd.schema"."t"', "expected_rows": 2})["schema"] == "odd.schema"
    with pytest.raises(retire.RetireError):
        retire.normalize_table_spec({"name": "t", "expected_rows": -1})


# --------------------------------------------------------------------------- schema references
@pytest.mark.parametrize("text, hit", [
    ("SELECT auth.user_id()", True), ('SELECT "auth".user_id()', True), ("SELECT AUTH . session()", True),
    ("SELECT neon_auth.x", False), ("SELECT my_auth.x()", False), ("SELECT 'auth'", False),
    ("x.auth.y", False)])
def test_mentions_schema(text, hit):
    assert removal.mentions_schema(text, "auth") is hit


def test_search_path_mentions():
    assert removal.search_path_mentions('"$user", auth, public', "auth")
    assert removal.search_path_mentions('"Auth"', "Auth") and not removal.search_path_mentions("public", "auth")


# --------------------------------------------------------------------------- audit
def test_code_identifiers_and_scan(tmp_path):
    assert audit.code_identifiers("bazaar-vid_project_memory", "bazaar-vid_") == [
        "bazaar-vid_project_memory", "project_memory", "projectMemory"]
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("projectMemory projectMemory")
    (tmp_path / "a.ts").write_text("const projectMemory = 1; // project_memory, projectMemoryV2\n")
    (tmp_path / "b.bin").write_bytes(b"\0projectMemory")
    found = audit.scan_code(str(tmp_path), ["projectMemory", "project_memory"])
    assert found["projectMemory"] == {"count": 1, "paths": [{"path": "a.ts", "count": 1}]}
    assert found["project_memory"]["count"] == 1


def _sample(ins=0, rows=10, newest=None):
    return {"stats": {"n_tup_ins": ins, "n_tup_upd": 0, "n_tup_del": 0}, "rows": rows, "newest": newest or {}}


def test_verdicts():
    assert audit.verdict(_sample(), _sample(ins=3, rows=13))[0] == "in use"
    assert audit.verdict(_sample(newest={"c": "2025"}), _sample(newest={"c": "2026"}))[0] == "in use"
    assert audit.verdict(_sample(rows=0), _sample(rows=0))[0] == "empty"
    verdict, why = audit.verdict(_sample(newest={"c": "2025"}), _sample(newest={"c": "2025"}),
                                 {"x": {"count": 2, "paths": []}})
    assert verdict == "dormant" and any("referenced in the application code" in w for w in why)
