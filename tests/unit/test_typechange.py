"""Unit tests of module_utils/pgsafe_typechange.py: plan, hazards, ordering, rollback SQL, precheck verdicts.

No database: catalog facts are built by hand in the shape gather_facts() returns.
"""
from __future__ import annotations

import pytest

from ansible.module_utils.pgsafe_locks import backoff_delays
from ansible.module_utils.pgsafe_quarantine import restore_sql as quarantine_restore_sql
from ansible.module_utils.pgsafe_typechange_orphans import removal_order
from ansible.module_utils.pgsafe_typechange_parse import (
    TypeChangeError,
    canonical_type_text,
    fk_action,
    normalise_changes,
    normalise_fks,
    normalise_uuid,
    uuid_accepts,
    validate_expression,
    varchar_limit,
)
from ansible.module_utils.pgsafe_typechange_plan import (
    build_plan,
    choose_strategy,
    diff_columns,
    disk_requirement,
    disk_verdict,
)
from ansible.module_utils.pgsafe_typechange_precheck import interpret_precheck
from ansible.module_utils.pgsafe_typechange_rollback import rollback_sql

EXPORTS = ("public", "bazaar-vid_exports")
ANALYTICS = ("public", "bazaar-vid_export_analytics")
PROJECT = ("public", "bazaar-vid_project")
USER = ("public", "bazaar-vid_user")


def col(type_, notnull=True, default=None, comment=None):
    return {"type": type_, "notnull": notnull, "default": default, "comment": comment, "attnum": 1}


def idx(name, columns, unique=False, primary=False, constraint=None, simple=True):
    return {"name": name, "columns": columns, "unique": unique, "primary": primary, "constraint": constraint,
            "contype": "p" if primary else ("u" if constraint else None), "simple": simple, "definition": "", "valid": True}


def prod_facts(ids="text", size=100_000, fks=(), views=()):
    return {
        "server_version_num": 150000,
        "tables": {
            EXPORTS: {"oid": 1, "size_bytes": size, "pk": ["id"], "checks": [], "triggers": [],
                      "columns": {"id": col(ids), "user_id": col(ids), "project_id": col(ids), "render_id": col("text")},
                      "indexes": [idx("bazaar-vid_exports_pkey", ["id"], True, True, "bazaar-vid_exports_pkey"),
                                  idx("exports_user_idx", ["user_id"]), idx("exports_project_idx", ["project_id"])]},
            ANALYTICS: {"oid": 2, "size_bytes": size * 3, "pk": ["id"], "checks": [], "triggers": [],
                        "columns": {"id": col("uuid"), "export_id": col(ids)},
                        "indexes": [idx("analytics_export_idx", ["export_id"])]},
            PROJECT: {"oid": 3, "size_bytes": 8192, "pk": ["id"], "checks": [], "triggers": [],
                      "columns": {"id": col("uuid")}, "indexes": []},
            USER: {"oid": 4, "size_bytes": 8192, "pk": ["id"], "checks": [], "triggers": [],
                   "columns": {"id": col("character varying(255)")}, "indexes": []},
        },
        "fks": list(fks), "views": list(views),
    }


CHANGES = normalise_changes([
    {"table": "bazaar-vid_exports", "column": "id", "type": "uuid", "default": "gen_random_uuid()"},
    {"table": "bazaar-vid_exports", "column": "user_id", "type": "varchar(255)"},
    {"table": "bazaar-vid_exports", "column": "project_id", "type": "uuid"},
    {"table": "public.bazaar-vid_export_analytics", "column": "export_id", "type": "uuid"},
])
FKS = normalise_fks([
    {"name": "exp_user_fk", "table": "bazaar-vid_exports", "columns": ["user_id"], "ref_table": "bazaar-vid_user",
     "ref_columns": ["id"], "on_delete": "cascade"},
    {"name": "exp_project_fk", "table": "bazaar-vid_exports", "columns": ["project_id"],
     "ref_table": "bazaar-vid_project", "ref_columns": ["id"], "on_delete": "cascade"},
    {"name": "an_exp_fk", "table": "bazaar-vid_export_analytics", "columns": ["export_id"],
     "ref_table": "bazaar-vid_exports", "ref_columns": ["id"], "on_delete": "CASCADE"},
])


def existing_fk(name, table, cols, ref, rcols, validated=True, on_delete="CASCADE"):
    return {"name": name, "schema": "public", "table": table, "columns": cols, "ref_schema": "public",
            "ref_table": ref, "ref_columns": rcols, "on_delete": on_delete, "on_update": "NO ACTION",
            "validated": validated, "definition": "FOREIGN KEY (x) REFERENCES y(z)"}


# ----------------------------------------------------------------------------- types and values
@pytest.mark.parametrize("given, canonical", [
    ("uuid", "uuid"), ("UUID", "uuid"), ("varchar(255)", "character varying(255)"),
    ("character varying( 255 )", "character varying(255)"), ("int8", "bigint"), ("numeric(10, 2)", "numeric(10,2)"),
    ("timestamptz", "timestamp with time zone"), ("timestamp(3)", "timestamp(3) without time zone"),
    ("text[]", "text[]"),
])
def test_canonical_type_text(given, canonical):
    assert canonical_type_text(given) == canonical


@pytest.mark.parametrize("bad", ["", "uuid; drop table x", "varchar(255) collate \"C\"", "int)", "uuid --"])
def test_type_grammar_rejects_anything_but_a_type(bad):
    with pytest.raises(TypeChangeError):
        canonical_type_text(bad)


def test_varchar_limit():
    assert varchar_limit("varchar(255)") == 255 and varchar_limit("uuid") is None


@pytest.mark.parametrize("value, normal", [
    ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
])
def test_uuid_spellings_uuid_in_accepts(value, normal):
    assert uuid_accepts(value) and normalise_uuid(value) == normal


@pytest.mark.parametrize("value", ["", "not-a-uuid", " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                                   "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                                   "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
                                   "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                                   None])
def test_values_uuid_in_rejects(value):
    assert not uuid_accepts(value) and normalise_uuid(value) is None


@pytest.mark.parametrize("expr", ["x; DROP TABLE y", "x -- c", "x /* c */", "f(x", "'a", 'x\\y'])
def test_using_expression_is_one_expression(expr):
    with pytest.raises(TypeChangeError):
        validate_expression(expr, "using")


def test_fk_actions():
    assert fk_action("cascade") == "CASCADE" and fk_action("set-null") == "SET NULL" and fk_action(None) == "NO ACTION"
    with pytest.raises(TypeChangeError):
        fk_action("explode")


def test_duplicate_change_is_refused():
    with pytest.raises(TypeChangeError, match="twice"):
        normalise_changes([{"table": "t", "column": "c", "type": "uuid"}, {"table": "public.t", "column": "c",
                                                                          "type": "uuid"}])


# ----------------------------------------------------------------------------- plan
def test_prod_plan_orders_unit_and_lists_fks():
    plan = build_plan(CHANGES, FKS, prod_facts())
    assert not plan["blockers"] and not plan["converged"] and plan["strategy"] == "rewrite"
    steps = plan["steps"]
    first_convert = next(i for i, s in enumerate(steps) if "text -> uuid" in s)
    add = [i for i, s in enumerate(steps) if s.startswith("add foreign key")]
    validate = [i for i, s in enumerate(steps) if s.startswith("validate foreign key")]
    assert steps[0].startswith("precheck") and first_convert < min(add) and max(add) < min(validate)
    assert [f["state"] for f in plan["foreign_keys"]] == ["missing"] * 3
    assert sorted(plan["touched_tables"]) == sorted(['"public"."bazaar-vid_exports"', '"public"."bazaar-vid_export_analytics"',
                                                     '"public"."bazaar-vid_user"', '"public"."bazaar-vid_project"'])


def test_converged_plan_is_a_no_op():
    facts = prod_facts(ids="uuid", fks=[
        existing_fk("exp_user_fk", "bazaar-vid_exports", ["user_id"], "bazaar-vid_user", ["id"]),
        existing_fk("exp_project_fk", "bazaar-vid_exports", ["project_id"], "bazaar-vid_project", ["id"]),
        existing_fk("an_exp_fk", "bazaar-vid_export_analytics", ["export_id"], "bazaar-vid_exports", ["id"])])
    facts["tables"][EXPORTS]["columns"]["user_id"] = col("character varying(255)")
    facts["tables"][EXPORTS]["columns"]["id"] = col("uuid", default="gen_random_uuid()")
    plan = build_plan(CHANGES, FKS, facts)
    assert plan["converged"] and plan["steps"] == ["already converged: nothing to do"]


def test_not_valid_fk_is_only_validated_and_a_different_one_is_recreated():
    facts = prod_facts(ids="uuid", fks=[
        existing_fk("exp_user_fk", "bazaar-vid_exports", ["user_id"], "bazaar-vid_user", ["id"], validated=False),
        existing_fk("exp_project_fk", "bazaar-vid_exports", ["project_id"], "bazaar-vid_project", ["id"],
                    on_delete="NO ACTION")])
    facts["tables"][EXPORTS]["columns"]["user_id"] = col("character varying(255)")
    plan = build_plan(CHANGES, FKS, facts)
    states = {f["name"]: f["state"] for f in plan["foreign_keys"]}
    assert states == {"exp_user_fk": "not_valid", "exp_project_fk": "different", "an_exp_fk": "missing"}
    assert [f["name"] for f in plan["drop_fks"]] == ["exp_project_fk"]
    assert any("another definition" in h for h in plan["hazards"])


def test_existing_fk_on_a_changed_column_is_dropped_and_recreated():
    facts = prod_facts(fks=[existing_fk("legacy_fk", "bazaar-vid_export_analytics", ["export_id"],
                                        "bazaar-vid_exports", ["id"], on_delete="NO ACTION")])
    plan = build_plan(CHANGES, [], facts)
    assert [(f["name"], f["recreate"]) for f in plan["drop_fks"]] == [("legacy_fk", True)]
    steps = plan["steps"]
    assert steps.index("drop foreign key legacy_fk on \"public\".\"bazaar-vid_export_analytics\"") < next(
        i for i, s in enumerate(steps) if "-> uuid" in s) < steps.index("recreate foreign key legacy_fk NOT VALID")


def test_fk_type_mismatch_after_the_change_is_a_blocker():
    plan = build_plan(CHANGES[3:], FKS[2:], prod_facts())  # child -> uuid, parent stays text
    assert any("will be uuid but" in b for b in plan["blockers"])


def test_missing_table_and_column_are_blockers():
    changes = normalise_changes([{"table": "nope", "column": "id", "type": "uuid"},
                                 {"table": "bazaar-vid_exports", "column": "nope", "type": "uuid"}])
    plan = build_plan(changes, [], prod_facts())
    assert any("nope" in b and "does not exist" in b for b in plan["blockers"])
    assert len(plan["blockers"]) == 2


def view(name, has_dependents=False, kind="v"):
    return {"oid": 9, "schema": "public", "name": name, "kind": kind, "dep_schema": "public",
            "dep_table": "bazaar-vid_exports", "dep_columns": ["id"], "definition": " SELECT 1;", "comment": None,
            "owner": "postgres", "options": [], "has_dependents": has_dependents, "grants": []}


def test_dependent_view_is_recreated_or_refused_by_name():
    ok = build_plan(CHANGES, FKS, prod_facts(views=[view("v1")]))
    assert not ok["blockers"] and "recreate view \"public\".\"v1\"" in ok["steps"]
    bad = build_plan(CHANGES, FKS, prod_facts(views=[view("v2", has_dependents=True), view("m", kind="m")]))
    assert any('"public"."v2"' in b for b in bad["blockers"]) and any('"public"."m"' in b for b in bad["blockers"])


def test_strategy_choice_by_size_and_blockers():
    assert choose_strategy("auto", {"t": 10}, threshold=100)[0] == "rewrite"
    assert choose_strategy("auto", {"t": 1000}, threshold=100)[0] == "online"
    assert choose_strategy("auto", {"t": 1000}, threshold=100, online_blockers=["x"])[0] == "rewrite"
    assert choose_strategy("rewrite", {"t": 10**12})[0] == "rewrite"
    with pytest.raises(TypeChangeError, match="online is not possible"):
        choose_strategy("online", {"t": 1}, online_blockers=["no primary key"])
    big = build_plan(CHANGES, FKS, prod_facts(size=10**9))
    assert big["strategy"] == "online"
    facts = prod_facts(size=10**9)
    facts["tables"][EXPORTS]["indexes"].append(idx("expr_idx", ["id"], simple=False))
    assert build_plan(CHANGES, FKS, facts)["strategy"] == "rewrite"


def test_leftover_shadow_column_resumes_online():
    facts = prod_facts()
    facts["tables"][EXPORTS]["columns"]["id_pgsafe_new"] = col("uuid", notnull=False)
    plan = build_plan(CHANGES, FKS, facts, strategy="rewrite")
    assert plan["strategy"] == "online" and "resuming" in plan["strategy_reason"]


def test_disk_requirement_and_verdict():
    assert disk_requirement({"a": 100, "b": 50}, "rewrite", 10) == 310
    assert disk_requirement({"a": 100}, "online", 0) == 100
    v = disk_verdict(310, 200)
    assert not v["ok"] and "310" in v["note"] and "200" in v["note"]
    assert disk_verdict(10, None)["ok"] and "not measurable" in disk_verdict(10, None)["note"]


def test_backoff_is_bounded():
    assert backoff_delays(5, 0.5, 2.0) == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert backoff_delays(0, 1, 1) == []


def test_removal_order_children_first():
    edges = [{"schema": "public", "table": "a", "ref_schema": "public", "ref_table": "e"},
             {"schema": "public", "table": "e", "ref_schema": "public", "ref_table": "p"}]
    keys = [("public", "p"), ("public", "e"), ("public", "a")]
    assert removal_order(keys, edges) == [("public", "a"), ("public", "e"), ("public", "p")]
    assert removal_order(list(reversed(keys)), edges) == [("public", "a"), ("public", "e"), ("public", "p")]


# ----------------------------------------------------------------------------- precheck verdicts
def test_precheck_verdict_lists_values_pks_collisions_and_orphans():
    raw = {"invalid": [{"table": "t", "column": "id", "type": "uuid", "count": 2,
                        "samples": [{"pk": {"id": ""}, "value": ""}, {"pk": {"id": "x"}, "value": "x"}]}],
           "normalising": [{"table": "t", "column": "id", "count": 1,
                            "samples": [{"value": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
                                         "normalised": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]}],
           "collisions": [{"table": "t", "column": "id", "type": "uuid", "count": 1,
                           "samples": [{"normalised": "a0ee", "values": ["A0EE", "a0ee"]}]}],
           "orphans": [{"fk": "fk1", "table": "c", "count": 1, "samples": [{"pk": {"id": 7}}]}],
           "orphan_policy": "fail", "disk": {"ok": False, "note": "need 10 bytes free, 5 available"}}
    v = interpret_precheck(raw)
    assert not v["ok"] and len(v["problems"]) == 4
    assert "'x'" in v["problems"][0] and '{"id": ""}' in v["problems"][0]
    assert "collision" in v["problems"][1] and "orphan_policy fail" in v["problems"][2]
    assert "will normalise" in v["notes"][0]
    raw.update(invalid=[], collisions=[], orphan_policy="quarantine", disk={"ok": True, "note": ""},
               would_quarantine={"public.c": 1, "public.d": 3})
    v = interpret_precheck(raw)
    assert v["ok"] and any("quarantined" in n for n in v["notes"]) and any("public.d: 3" in n for n in v["notes"])


# ----------------------------------------------------------------------------- rollback and diff
def test_rollback_sql_reverses_types_fks_and_restores_quarantine():
    plan = build_plan(CHANGES, FKS, prod_facts())
    text = rollback_sql(plan, "run-'1")
    assert text.startswith("-- pgsafe rollback") and text.rstrip().endswith("COMMIT;")
    assert 'DROP CONSTRAINT IF EXISTS "an_exp_fk"' in text
    assert 'ALTER TABLE "public"."bazaar-vid_exports" ALTER COLUMN "id" TYPE text USING "id"::text;' in text
    assert text.index("DROP CONSTRAINT") < text.index("TYPE text") < text.index("pgsafe.quarantine_row")
    assert "run-''1" in text  # the run id is a quoted literal
    assert "ORDER BY id DESC" in quarantine_restore_sql("r")


def test_diff_shows_column_definitions_before_after():
    plan = build_plan(CHANGES, FKS, prod_facts())
    d = diff_columns(plan)
    assert '"public"."bazaar-vid_exports"."id" text NOT NULL\n' in d["before"]
    assert '"public"."bazaar-vid_exports"."id" uuid NOT NULL DEFAULT gen_random_uuid()' in d["after"]
    assert "ON DELETE CASCADE" in d["after"] and "an_exp_fk" not in d["before"]


def test_hostile_names_are_quoted_in_generated_sql():
    hostile = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'
    changes = normalise_changes([{"table": '"' + hostile.replace('"', '""') + '"', "column": 'c"; --', "type": "uuid"}])
    facts = {"server_version_num": 150000, "fks": [], "views": [], "tables": {
        ("public", hostile): {"oid": 5, "size_bytes": 1, "pk": ['c"; --'], "checks": [], "triggers": [], "indexes": [],
                              "columns": {'c"; --': col("text")}}}}
    plan = build_plan(changes, [], facts)
    text = rollback_sql(plan, "r")
    assert '"bazaar-vid_x""; DROP TABLE ""bazaar-vid_user""; --"' in text and '"c""; --"' in text


# ----------------------------------------------------------------------------- shipped plans
def _plan_file(path):
    import yaml
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    return root / path, yaml.safe_load((root / path).read_text())["schema_fix_plan"]


@pytest.mark.parametrize("inventory, host", [("local", "prod"), ("prod", "prod"), ("prod", "staging")])
def test_shipped_prod_plan_matches_the_code_schema(inventory, host):
    path, plan = _plan_file(f"inventories/{inventory}/host_vars/{host}/schema_fix.yml")
    if host == "staging":
        assert path.is_symlink() and not str(path.readlink()).startswith("/")
    changes = {(c["table"], c["column"]): c["type"] for c in plan["changes"]}
    assert changes == {("public.bazaar-vid_exports", "id"): "uuid",
                       ("public.bazaar-vid_exports", "user_id"): "varchar(255)",
                       ("public.bazaar-vid_exports", "project_id"): "uuid",
                       ("public.bazaar-vid_export_analytics", "export_id"): "uuid"}
    assert plan["orphan_policy"] == "quarantine"
    from pathlib import Path
    reference = (Path(__file__).resolve().parents[2] / "files/reference/bazaar_vid.sql").read_text()
    for fk in normalise_fks(plan["foreign_keys"]):
        assert '"{0}"'.format(fk["name"]) in reference
        assert fk["on_delete"] == "CASCADE"
    assert len(plan["foreign_keys"]) == 3
    normalise_changes(plan["changes"])


def test_local_staging_plan_is_the_prod_plan():
    _, prod = _plan_file("inventories/local/host_vars/prod/schema_fix.yml")
    path, staging = _plan_file("inventories/local/host_vars/staging/schema_fix.yml")
    assert path.is_symlink() and str(path.readlink()) == "../prod/schema_fix.yml" and staging == prod


@pytest.mark.parametrize("inventory", ["local", "dev"])
def test_shipped_dev_plan_is_only_the_analytics_column(inventory):
    _, plan = _plan_file(f"inventories/{inventory}/host_vars/dev/schema_fix.yml")
    assert [(c["table"], c["column"], c["type"]) for c in plan["changes"]] == [
        ("public.bazaar-vid_export_analytics", "export_id", "uuid")]
    assert [f["name"] for f in plan["foreign_keys"]] == ["bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"]
