"""Declarative proposals on hand-built snapshots and diff items (no database, no Ansible)."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import yaml

from ansible.module_utils.pgsafe_hazards import HAZARDS
from ansible.module_utils.pgsafe_identifiers import split_qualified
from ansible.module_utils.pgsafe_proposal import (ADDITION_KINDS, key_parts, plain_key, plain_name, plan_document,
                                                  plan_type, propose, render_proposal_yaml, table_matches)
from ansible.module_utils.pgsafe_schema_diff import diff_snapshots
from ansible.module_utils.pgsafe_snapshot import FORMAT_VERSION, KINDS, qname
from ansible.module_utils.pgsafe_typechange_parse import canonical_type_text, normalise_changes, normalise_fks

STEP_KINDS = set(ADDITION_KINDS)
ROOT = Path(__file__).resolve().parents[2]


def col(position, typ, not_null=False, default=None, **kw):
    out = {"position": position, "type": typ, "not_null": not_null, "default": default, "identity": None,
           "generated": None, "collation": None, "comment": None}
    out.update(kw)
    return out


def table(schema, name, columns, rows=100.0, writes=0, **kw):
    out = {"schema": schema, "name": name, "kind": "table", "persistence": "permanent", "partition_key": None,
           "partition_of": None, "partition_bound": None, "rls_enabled": False, "rls_forced": False, "options": [],
           "comment": None, "reltuples": rows, "estimated_bytes": 8192 * (1 if rows else 0), "analyzed": True,
           "live_rows": 0, "writes": writes,
           "columns": {c: col(i + 1, *spec) for i, (c, spec) in enumerate(columns)}}
    out.update(kw)
    return out


def fk(schema, tname, name, columns, ref, ref_columns, on_delete="CASCADE", **kw):
    out = {"schema": schema, "table": qname(schema, tname), "name": name, "type": "foreign key",
           "definition": 'FOREIGN KEY ({0}) REFERENCES {1} ({2}) ON DELETE {3}'.format(
               ", ".join('"{0}"'.format(c) for c in columns), ref, ", ".join('"{0}"'.format(c) for c in ref_columns),
               on_delete),
           "columns": columns, "deferrable": False, "initially_deferred": False, "validated": True, "comment": None,
           "references": ref, "ref_columns": ref_columns, "on_update": "NO ACTION", "on_delete": on_delete,
           "match": "SIMPLE"}
    out.update(kw)
    return out


def index(schema, tname, name, keys, unique=False, predicate=None, definition=None):
    tkey = qname(schema, tname)
    return {"schema": schema, "table": tkey, "name": name, "method": "btree", "unique": unique, "primary": False,
            "valid": True, "keys": keys, "include": [], "predicate": predicate,
            "definition": definition or "CREATE {0}INDEX ON {1} USING btree ({2}){3}".format(
                "UNIQUE " if unique else "", tkey, ", ".join('"{0}"'.format(k) for k in keys),
                " WHERE " + predicate if predicate else ""),
            "constraint_backed": False, "comment": None}


def empty():
    snap = {"format_version": FORMAT_VERSION, "meta": {"database": "x"}}
    for kind in KINDS:
        snap[kind] = {}
    snap["schemas"]['"public"'] = {"name": "public", "comment": None}
    return snap


EXPORTS, USERS = qname("public", "bazaar-vid_exports"), qname("public", "bazaar-vid_user")


def reference():
    """What the code declares: uuid exports with FKs, an index, a unique key, an extra column on users."""
    ref = empty()
    ref["tables"][USERS] = table("public", "bazaar-vid_user", [
        ("id", ("character varying(255)", True)), ("email", ("character varying(255)", True)),
        ("isAdmin", ("boolean", True, "false")), ("nickname", ("text", False, "'anon'::text")),
        ("created_at", ("timestamp(3) with time zone", True, "now()"))])
    ref["tables"][EXPORTS] = table("public", "bazaar-vid_exports", [
        ("id", ("uuid", True, "gen_random_uuid()")), ("user_id", ("character varying(255)", True)),
        ("status", ("text", True, "'pending'::text")), ("note", ("text",)), ("kind", ("text", True))], rows=134.0)
    ref["tables"][qname("public", "metric")] = table("public", "metric", [
        ("id", ("integer", True)), ("name", ("text", True)), ("value", ("integer", False)), ("at", ("timestamp", True))])
    ref["constraints"][qname("public", "bazaar-vid_exports", "exports_user_fk")] = fk(
        "public", "bazaar-vid_exports", "exports_user_fk", ["user_id"], USERS, ["id"])
    ref["constraints"][qname("public", "bazaar-vid_user", "user_email_unique")] = {
        "schema": "public", "table": USERS, "name": "user_email_unique", "type": "unique",
        "definition": 'UNIQUE ("email")', "columns": ["email"], "deferrable": False, "initially_deferred": False,
        "validated": True, "comment": None}
    ref["constraints"][qname("public", "bazaar-vid_exports", "exports_status_check")] = {
        "schema": "public", "table": EXPORTS, "name": "exports_status_check", "type": "check",
        "definition": "CHECK ((status <> ''::text))", "columns": ["status"], "deferrable": False,
        "initially_deferred": False, "validated": True, "comment": None}
    ref["indexes"][qname("public", "exports_status_idx")] = index("public", "bazaar-vid_exports", "exports_status_idx",
                                                                  ["status", "user_id"], predicate="(note IS NULL)")
    ref["indexes"][qname("public", "exports_lower_idx")] = index(
        "public", "bazaar-vid_exports", "exports_lower_idx", ["lower(status)"],
        definition="CREATE INDEX ON {0} USING btree (lower(status))".format(EXPORTS))
    return ref


def live():
    """Prod-like: text ids, no FK, a nullable column, extra objects of every kind."""
    snap = empty()
    snap["tables"][USERS] = table("public", "bazaar-vid_user", [
        ("id", ("character varying(255)", True)), ("email", ("character varying(255)", True)),
        ("isAdmin", ("boolean", False, "true")), ("created_at", ("timestamp(3) with time zone", True, "now()")),
        ("legacy_flag", ("boolean", False))])
    snap["tables"][EXPORTS] = table("public", "bazaar-vid_exports", [
        ("id", ("text", True)), ("user_id", ("text", True)), ("status", ("text", True)), ("note", ("text",)),
        ("kind", ("text", False))], rows=134.0)
    snap["tables"][qname("public", "metric")] = table("public", "metric", [
        ("id", ("integer", True)), ("name", ("text", True)), ("value", ("integer", False)), ("at", ("timestamp", True))])
    snap["tables"][qname("public", "old_metric")] = table("public", "old_metric", [
        ("id", ("integer", True)), ("name", ("text", True)), ("value", ("integer", False)),
        ("at", ("timestamp", True))], rows=250.0)
    snap["tables"][qname("public", "scratch")] = table("public", "scratch", [("a", ("text",))], rows=0.0)
    snap["tables"][qname("public", "busy")] = table("public", "busy", [("a", ("text",))], rows=0.0, writes=12)
    snap["schemas"]['"auth"'] = {"name": "auth", "comment": None}
    snap["tables"][qname("auth", "users")] = table("auth", "users", [("id", ("uuid", True))], rows=5.0)
    snap["constraints"][qname("public", "busy", "busy_users_fk")] = fk("public", "busy", "busy_users_fk", ["a"],
                                                                      qname("auth", "users"), ["id"])
    snap["indexes"][qname("public", "user_email_key")] = index("public", "bazaar-vid_user", "user_email_key",
                                                               ["email"], unique=True)
    snap["indexes"][qname("public", "legacy_idx")] = index("public", "bazaar-vid_user", "legacy_idx", ["legacy_flag"])
    snap["constraints"][qname("public", "bazaar-vid_user", "legacy_check")] = {
        "schema": "public", "table": USERS, "name": "legacy_check", "type": "check", "definition": "CHECK (true)",
        "columns": ["legacy_flag"], "deferrable": False, "initially_deferred": False, "validated": True,
        "comment": None}
    snap["functions"]['"auth"."uid"()'] = {
        "schema": "auth", "name": "uid", "arguments": "", "kind": "function", "result": "uuid", "language": "sql",
        "volatility": "stable", "security_definer": False, "strict": False, "config": [], "body_sha256": "ab" * 32,
        "comment": None}
    return snap


@pytest.fixture
def proposal():
    lv, ref = live(), reference()
    return propose(lv, ref, diff_snapshots(lv, ref))


def steps(prop):
    plan = prop.get("schema_fix_plan") or {}
    return plan.get("changes", []), plan.get("foreign_keys", []), prop.get("schema_additions", [])


def test_type_changes_carry_the_codes_default_and_not_null(proposal):
    changes, _, _ = steps(proposal)
    assert changes == [
        {"table": "public.bazaar-vid_exports", "column": "id", "type": "uuid", "default": "gen_random_uuid()",
         "not_null": True},
        {"table": "public.bazaar-vid_exports", "column": "user_id", "type": "varchar(255)", "not_null": True},
    ]
    assert proposal["schema_fix_plan"]["orphan_policy"] == "quarantine"
    assert proposal["schema_fix_plan"]["strategy"] == "auto"
    normalise_changes(changes)  # the engine reads them as they are


def test_missing_foreign_key_is_a_step_as_the_code_names_it(proposal):
    _, fks, _ = steps(proposal)
    assert fks == [{"name": "exports_user_fk", "table": "public.bazaar-vid_exports", "columns": ["user_id"],
                    "ref_table": "public.bazaar-vid_user", "ref_columns": ["id"], "on_delete": "cascade",
                    "on_update": "no action"}]
    assert normalise_fks(fks)[0]["on_delete"] == "CASCADE"


def test_additive_steps(proposal):
    _, _, additions = steps(proposal)
    assert additions == [
        {"kind": "add_column", "table": "public.bazaar-vid_user", "column": "nickname", "type": "text",
         "default": "'anon'::text", "not_null": False},
        {"kind": "set_default", "table": "public.bazaar-vid_exports", "column": "status", "default": "'pending'::text"},
        {"kind": "set_default", "table": "public.bazaar-vid_user", "column": "isAdmin", "default": "false"},
        {"kind": "set_not_null", "table": "public.bazaar-vid_exports", "column": "kind"},
        {"kind": "set_not_null", "table": "public.bazaar-vid_user", "column": "isAdmin"},
        {"kind": "create_index", "table": "public.bazaar-vid_exports", "name": "exports_status_idx",
         "columns": ["status", "user_id"], "unique": False, "method": "btree", "where": "(note IS NULL)"},
    ]
    additions_engine = pytest.importorskip("ansible.module_utils.pgsafe_additions")
    assert len(additions_engine.normalise_additions(additions)) == len(additions)  # the engine reads them as they are
    # the unique constraint has its equivalent unique index live: not proposed, said why
    equivalent = [n for n in proposal["not_proposed"] if n["attribute"] == "unique_as_index"]
    assert [n["object"] for n in equivalent] == ["public.bazaar-vid_user.user_email_unique"]
    assert "same guarantee" in equivalent[0]["why"]


def test_what_the_vocabulary_cannot_say_is_not_proposed(proposal):
    by_object = {(n["object"], n["attribute"]): n for n in proposal["not_proposed"]}
    assert "expressions" in by_object[("public.exports_lower_idx", "presence")]["why"]
    assert "check" in by_object[("public.bazaar-vid_exports.exports_status_check", "presence")]["why"]
    assert "investigate" in by_object[("auth.uid()", "presence")]["why"]


def test_nothing_destructive_is_ever_a_step(proposal):
    changes, fks, additions = steps(proposal)
    assert {a["kind"] for a in additions} <= STEP_KINDS
    extra_tables = {"public.old_metric", "public.scratch", "public.busy", "auth.users"}
    stepped = {c["table"] for c in changes} | {f["table"] for f in fks} | {a["table"] for a in additions}
    assert not stepped & extra_tables
    assert not any(a.get("column") == "legacy_flag" or a.get("name") == "legacy_idx" for a in additions)
    candidates = {c["object"]: c for c in proposal["candidates"]}
    assert set(candidates) == {"auth", "auth.users", "public.busy", "public.old_metric", "public.scratch",
                               "public.bazaar-vid_user.legacy_flag", "public.legacy_idx",
                               "public.bazaar-vid_user.legacy_check"}
    assert candidates["public.scratch"]["suggested"] == "retire (quarantine)"  # empty and unwritten
    assert candidates["public.busy"]["suggested"] == "audit"  # empty but written
    assert candidates["public.busy"]["evidence"]["writes"] == 12
    assert candidates["auth.users"]["suggested"] == "audit" and candidates["auth.users"]["evidence"]["rows"] == 5
    assert candidates["public.old_metric"]["suggested"] == "merge into public.metric"  # a copy holding data
    assert candidates["auth"]["kind"] == "schema" and candidates["auth"]["suggested"] == "investigate"
    assert candidates["auth"]["evidence"]["tables"] == ["auth.users"]
    assert candidates["auth"]["evidence"]["dependents"] == ["foreign key public.busy.busy_users_fk"]
    assert "function auth.uid()" in candidates["auth"]["evidence"]["objects"]
    assert candidates["auth.users"]["evidence"]["dependents"] == ["foreign key public.busy.busy_users_fk"]
    assert candidates["public.bazaar-vid_user.legacy_flag"]["evidence"]["dependents"] == [
        "check public.bazaar-vid_user.legacy_check", "index public.legacy_idx"]
    assert {c["kind"] for c in proposal["candidates"]} == {"schema", "table", "column", "index", "constraint"}


def test_every_difference_lands_in_exactly_one_place():
    lv, ref = live(), reference()
    diffs = diff_snapshots(lv, ref)
    prop = propose(lv, ref, diffs)
    placed = ([n["object"] for n in prop["notes"]] + [c["object"] for c in prop["candidates"]]
              + [n["object"] for n in prop["not_proposed"]])
    for d in diffs:
        assert plain_key(d["object"]) in placed, d
    assert len(prop["candidates"]) + len(prop["not_proposed"]) + len(prop["notes"]) <= len(diffs)
    for note in prop["notes"]:
        assert set(note["hazards"]) <= set(HAZARDS)


def test_deterministic_whatever_the_order_of_the_differences():
    lv, ref = live(), reference()
    diffs = diff_snapshots(lv, ref)
    first = propose(lv, ref, diffs)
    shuffled = copy.deepcopy(diffs)
    random.Random(7).shuffle(shuffled)
    assert propose(lv, ref, shuffled) == first
    assert render_proposal_yaml(propose(lv, ref, shuffled), "prod", "ref.sql") == render_proposal_yaml(
        first, "prod", "ref.sql")


def test_rendered_yaml_holds_only_the_steps(proposal):
    text = render_proposal_yaml(proposal, "prod (snapshot of 2026-01-01)", "files/reference/bazaar_vid.sql")
    assert text.startswith("---\n# Declarative proposal generated by pgsafe: prod (snapshot of 2026-01-01)")
    assert "REVIEW" in text and "files/reference/bazaar_vid.sql" in text
    assert yaml.safe_load(text) == plan_document(proposal)
    assert set(yaml.safe_load(text)) == {"schema_fix_plan", "schema_additions"}
    assert "restorable" in text.split("schema_fix_plan:\n", 1)[1].split("\n", 2)[0]  # the orphan policy's comment
    for candidate in proposal["candidates"]:
        assert "# - {0} ({1}): suggested {2}".format(candidate["object"], candidate["kind"],
                                                      candidate["suggested"]) in text
    assert "rows 250" in text and "writes 12" in text
    assert all(len(line) <= 160 for line in text.splitlines())
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any("old_metric" in line or "legacy" in line or "auth" in line for line in body)


def test_rendered_yaml_passes_the_projects_yamllint(proposal):
    linter = pytest.importorskip("yamllint.linter")
    config = pytest.importorskip("yamllint.config").YamlLintConfig(file=str(ROOT / ".yamllint"))
    text = render_proposal_yaml(proposal, "prod", "files/reference/bazaar_vid.sql")
    assert [str(p) for p in linter.run(text, config)] == []


def test_empty_proposal_renders_an_empty_mapping():
    snap = live()
    prop = propose(snap, copy.deepcopy(snap), [])
    assert prop == {"candidates": [], "not_proposed": [], "notes": []}
    text = render_proposal_yaml(prop, "prod", "ref.sql")
    assert yaml.safe_load(text) == {}


def test_rename_is_a_candidate_never_a_step():
    lv, ref = live(), reference()
    ref["tables"][qname("public", "api_usage")] = ref["tables"].pop(qname("public", "metric"))
    ref["tables"][qname("public", "api_usage")]["name"] = "api_usage"
    del lv["tables"][qname("public", "old_metric")]
    lv["tables"][qname("public", "metric")]["reltuples"] = 40.0
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    candidates = {c["object"]: c for c in prop["candidates"]}
    assert candidates["public.metric"]["suggested"] == "merge into public.api_usage / rename"
    assert candidates["public.metric"]["evidence"]["rows"] == 40
    missing = [n for n in prop["not_proposed"] if n["object"] == "public.api_usage"]
    assert len(missing) == 1 and "public.metric" in missing[0]["why"]
    # a rename the diff itself reports (kind table, attribute name) is a candidate too
    item = {"kind": "table", "object": qname("public", "api_usage"), "attribute": "name", "left": "metric",
            "right": "api_usage", "severity": "info", "hazard": {"types": [], "note": ""},
            "summary": "table api_usage exists under another name in left: metric"}
    prop = propose(lv, ref, [item])
    assert prop["candidates"][0]["object"] == "public.metric"
    assert prop["candidates"][0]["suggested"] == "merge into public.api_usage / rename"
    assert "schema_fix_plan" not in prop and "schema_additions" not in prop


def test_empty_duplicate_is_retired_not_merged():
    lv, ref = live(), reference()
    lv["tables"][qname("public", "old_metric")]["reltuples"] = 0.0
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    old = next(c for c in prop["candidates"] if c["object"] == "public.old_metric")
    assert old["suggested"] == "retire (quarantine)" and "public.metric" in old["why"]


def test_unproposable_parts_are_not_proposed():
    lv, ref = live(), reference()
    ref["tables"][USERS]["columns"]["must"] = col(9, "integer", True)  # NOT NULL, no default: fails on rows
    ref["tables"][USERS]["columns"]["mood"] = col(10, "public.mood")  # not a plain type
    ref["tables"][EXPORTS]["columns"]["note"] = col(4, "public.mood")
    lv["tables"][EXPORTS]["columns"]["status"]["not_null"] = True
    ref["tables"][EXPORTS]["columns"]["status"] = col(3, "integer", False, "0")  # type + drop of NOT NULL
    ref["constraints"][qname("public", "bazaar-vid_exports", "exports_user_fk")]["deferrable"] = True
    ref["constraints"][qname("public", "bazaar-vid_user", "user_email_unique")]["columns"] = ["email", "isAdmin"]
    ref["constraints"][qname("public", "bazaar-vid_user", "user_email_unique")]["definition"] = \
        'UNIQUE ("email", "isAdmin")'
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    changes, fks, additions = steps(prop)
    assert fks == []
    assert {"table": "public.bazaar-vid_exports", "column": "status", "type": "integer", "default": "0"} in changes
    assert not any(c["column"] == "note" for c in changes)
    assert {"kind": "create_index", "table": "public.bazaar-vid_user", "name": "user_email_unique",
            "columns": ["email", "isAdmin"], "unique": True, "method": "btree"} in additions
    why = {(n["object"], n["attribute"]): n["why"] for n in prop["not_proposed"]}
    assert "NOT NULL without a default" in why[("public.bazaar-vid_user.must", "presence")]
    assert "not a plain type" in why[("public.bazaar-vid_user.mood", "presence")]
    assert "not a plain type" in why[("public.bazaar-vid_exports.note", "type")]
    assert "DROP NOT NULL" in why[("public.bazaar-vid_exports.status", "not_null")]
    assert "deferrable" in why[("public.bazaar-vid_exports.exports_user_fk", "presence")]


def test_foreign_key_to_a_table_the_live_side_lacks_is_not_proposed():
    lv, ref = live(), reference()
    ref["tables"][qname("public", "project")] = table("public", "project", [("id", ("uuid", True))])
    ref["tables"][EXPORTS]["columns"]["project_id"] = col(6, "uuid", True)
    lv["tables"][EXPORTS]["columns"]["project_id"] = col(6, "uuid", True)
    ref["constraints"][qname("public", "bazaar-vid_exports", "exports_project_fk")] = fk(
        "public", "bazaar-vid_exports", "exports_project_fk", ["project_id"], qname("public", "project"), ["id"])
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    assert [f["name"] for f in steps(prop)[1]] == ["exports_user_fk"]
    why = {n["object"]: n["why"] for n in prop["not_proposed"]}
    assert "lacks" in why["public.bazaar-vid_exports.exports_project_fk"]


def test_not_valid_foreign_key_is_proposed_for_validation():
    lv, ref = live(), reference()
    lv["tables"][EXPORTS]["columns"]["user_id"]["type"] = "character varying(255)"
    lv["constraints"][qname("public", "bazaar-vid_exports", "exports_user_fk")] = fk(
        "public", "bazaar-vid_exports", "exports_user_fk", ["user_id"], USERS, ["id"], validated=False)
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    assert [f["name"] for f in steps(prop)[1]] == ["exports_user_fk"]


def test_hostile_names_round_trip():
    assert plain_name("public", "bazaar-vid_exports") == "public.bazaar-vid_exports"
    assert plain_name("odd.schema", 'we"ird') == '"odd.schema"."we""ird"'
    assert split_qualified(plain_name("odd.schema", 'we"ird')) == ("odd.schema", 'we"ird')
    assert key_parts(qname("a.b", 'c"d', "e")) == ["a.b", 'c"d', "e"]
    assert plain_key('"public"."show_db_tree"()') == "public.show_db_tree()"
    assert plain_key('"public"."f"("my type", integer)') == 'public.f("my type", integer)'
    assert key_parts('"a(b"."c"') == ["a(b", "c"]
    lv, ref = empty(), empty()
    tkey = qname("public", 'odd"name.x')
    lv["tables"][tkey] = table("public", 'odd"name.x', [("a", ("text",))])
    ref["tables"][tkey] = table("public", 'odd"name.x', [("a", ("text",)), ("b c", ("integer", False, "1"))])
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    step = prop["schema_additions"][0]
    assert split_qualified(step["table"]) == ("public", 'odd"name.x') and step["column"] == "b c"
    assert yaml.safe_load(render_proposal_yaml(prop, "x", "y")) == plan_document(prop)


@pytest.mark.parametrize("text,spelled", [
    ("character varying(255)", "varchar(255)"), ("character varying", "varchar"), ("uuid", "uuid"),
    ("timestamp(3) with time zone", "timestamptz(3)"), ("timestamp without time zone", "timestamp"),
    ("time with time zone", "timetz"), ("character varying(20)[]", "varchar(20)[]"), ("numeric(10,2)", "numeric(10,2)"),
])
def test_plan_type_reads_back_as_the_reference_type(text, spelled):
    assert plan_type(text) == spelled
    assert canonical_type_text(spelled) == text


def test_table_matches_needs_most_columns_in_common():
    lv, ref = live(), reference()
    assert table_matches(lv, ref, [qname("public", "scratch"), qname("public", "old_metric")], []) == {
        qname("public", "old_metric"): ("duplicate", qname("public", "metric"))}


def test_declared_tables_the_data_questions_are_candidates_never_steps():
    """Declared by the code, but empty and never written (exact count): a retirement candidate; one the inventory
    asks to audit: an audit candidate with its exact rows; a declared table with rows: nothing."""
    from ansible.module_utils.pgsafe_proposal import declared_candidates
    ref, lv = reference(), live()
    for snap in (ref, lv):
        snap["tables"][qname("public", "patch")] = table("public", "patch", [("id", ("uuid", True))], rows=0.0)
        snap["tables"][qname("public", "memory")] = table("public", "memory", [("id", ("uuid", True))], rows=621.0)
    lv["tables"][qname("public", "patch_written")] = table("public", "patch_written", [("id", ("uuid", True))],
                                                            rows=0.0, writes=3)
    ref["tables"][qname("public", "patch_written")] = lv["tables"][qname("public", "patch_written")]
    prop = propose(lv, ref, diff_snapshots(lv, ref))
    counts = {qname("public", "patch"): 0, qname("public", "memory"): 621, qname("public", "patch_written"): 0,
              EXPORTS: 134}
    declared_candidates(prop, lv, ref, counts, audit=["public.memory"])
    by_object = {c["object"]: c for c in prop["candidates"]}
    assert by_object["public.patch"]["suggested"] == "retire (quarantine)"
    assert by_object["public.patch"]["evidence"]["rows"] == 0
    assert by_object["public.memory"]["suggested"] == "audit" and by_object["public.memory"]["evidence"]["rows"] == 621
    assert "public.patch_written" not in by_object and "public.bazaar-vid_exports" not in by_object
    text = render_proposal_yaml(prop, "test", "ref.sql")
    assert "public.patch" in text and "patch" not in json.dumps(yaml.safe_load(text))
