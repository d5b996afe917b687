"""The plan's choice between copy and swap and shadow columns per table, in plain Python (the catalog reads and the
method itself on real Postgres: tests/faults/test_typefix_copyswap.py)."""
from __future__ import annotations

import pytest

from ansible.module_utils.pgsafe_typechange_copy import (COLUMNS, COPY, choose_methods, copy_blockers, method_statements,
                                                         method_steps, old_name)

KEY = ("public", "exports")


def facts(**extra):
    base = {"relkind": "r", "persistence": "p", "tablespace": False, "rls": False, "partition": False, "typed": False,
            "inheritance": False, "replident": "d", "owner_member": True, "owner": "app", "special_columns": [],
            "reloptions": [], "comment": None, "odd_indexes": [], "depends": [
                {"class": "pg_type", "deptype": "i", "object": "type exports", "detail": None, "constraint": None},
                {"class": "pg_class", "deptype": "a", "object": "index exports_idx", "detail": "i", "constraint": None},
                {"class": "pg_constraint", "deptype": "a", "object": "constraint exports_pkey", "detail": "p",
                 "constraint": ("public", "exports", "exports_pkey")},
                {"class": "pg_attrdef", "deptype": "a", "object": "default for column id", "detail": None,
                 "constraint": None}]}
    base.update(extra)
    return base


def plan(drop_fks=(), views=(), using=None, leftover=False):
    return {"changes": [{"schema": "public", "table": "exports", "column": "id", "needs_type": True, "using": using,
                         "leftover_new_column": leftover}],
            "drop_fks": list(drop_fks), "views": list(views)}


TABLES = {KEY: {"pk": ["id"]}}


def dep(cls, detail, obj="thing", constraint=None):
    return {"class": cls, "deptype": "n", "object": obj, "detail": detail, "constraint": constraint}


def test_a_plain_table_whose_dependents_are_all_carried_over_is_copied():
    methods = choose_methods(plan(), TABLES, {KEY: facts()}, 150000)
    assert methods == {'"public"."exports"': {"method": COPY, "reason": "every dependent is carried over by the copy"}}
    assert "copy and swap" in method_steps(methods)[0]
    assert method_statements(methods) == ['-- online "public"."exports": copy and swap']


@pytest.mark.parametrize("extra, named", [
    ({"depends": [dep("pg_trigger", "audit")]}, "user trigger audit"),
    ({"depends": [dep("pg_policy", None, "policy p on table exports")]}, "row-level security policy policy p"),
    ({"depends": [dep("pg_rewrite", "public.v_open")]}, "view public.v_open"),
    ({"depends": [dep("pg_rewrite", "", "rule r on table exports")]}, "rule rule r"),
    ({"depends": [dep("pg_publication_rel", None, "publication of exports in pub")]}, "publication membership"),
    ({"depends": [dep("pg_proc", None, "function f()")]}, "function function f()"),
    ({"depends": [dep("pg_constraint", "f", "constraint fk_other", ("public", "notes", "fk_other"))]},
     "foreign key constraint fk_other (not re-created by this plan)"),
    ({"depends": [dep("pg_constraint", "x", "constraint no_overlap")]}, "exclusion constraint"),
    ({"depends": [dep("pg_foo", None, "a thing")]}, "dependent of a kind pgsafe does not know a thing"),
    ({"relkind": "p"}, "not a plain table"), ({"inheritance": True}, "children"), ({"rls": True}, "row-level"),
    ({"persistence": "u"}, "unlogged"), ({"owner_member": False}, "not a member of its owner app"),
    ({"special_columns": ["seq"]}, "column(s) seq"), ({"odd_indexes": ["i1"]}, "index(es) i1"),
])
def test_what_the_copy_does_not_carry_over_falls_back_to_shadow_columns_naming_it(extra, named):
    f = facts(**extra)
    if "depends" in extra:
        f["depends"] = facts()["depends"] + extra["depends"]
    methods = choose_methods(plan(), TABLES, {KEY: f}, 150000)
    m = methods['"public"."exports"']
    assert m["method"] == COLUMNS and named in m["reason"], m
    assert "shadow columns (copy and swap would not carry over: " in method_steps(methods)[0]


def test_foreign_keys_and_views_the_plan_recreates_and_our_own_triggers_do_not_block_the_copy():
    f = facts(depends=facts()["depends"] + [
        dep("pg_constraint", "f", "constraint fk_child", ("public", "child", "fk_child")),
        dep("pg_rewrite", "public.v_open"), dep("pg_trigger", "pgsafe_copy_log"), dep("pg_trigger", "")])
    p = plan(drop_fks=[{"schema": "public", "table": "child", "name": "fk_child"}],
             views=[{"schema": "public", "name": "v_open"}])
    assert copy_blockers(KEY, {KEY: f}, p) == []


@pytest.mark.parametrize("p, version, reason", [
    (plan(leftover=True), 150000, "resuming an interrupted shadow-column run"),
    (plan(using="id::uuid"), 150000, "a using expression on a primary key column"),
    (plan(), 130000, "older than PostgreSQL 14"),
])
def test_resumes_old_servers_and_key_expressions_keep_shadow_columns(p, version, reason):
    m = choose_methods(p, TABLES, {KEY: facts()}, version)['"public"."exports"']
    assert m["method"] == COLUMNS and reason in m["reason"]


def test_no_primary_key_or_no_facts_keeps_shadow_columns():
    assert choose_methods(plan(), {KEY: {"pk": []}}, {KEY: facts()}, 150000)['"public"."exports"']["method"] == COLUMNS
    assert "not read" in choose_methods(plan(), TABLES, {}, 150000)['"public"."exports"']["reason"]


def test_the_old_names_are_unique_per_table_and_fit_in_63_bytes():
    assert old_name("exports", 123) != old_name("exports", 124)
    assert len(old_name("x" * 63, 4294967295).encode()) <= 63


def test_a_side_job_taken_by_a_free_session_runs_once_and_its_owner_gets_its_result_and_error():
    import threading

    from ansible.module_utils.pgsafe_typechange_copy_run import SideJob
    calls = []
    job = SideJob(lambda conn: calls.append(conn) or "verified")
    worker = threading.Thread(target=job.run, args=("free session",))
    worker.start()
    worker.join()
    assert job.finish("own session") == "verified" and calls == ["free session"]  # not run twice
    lone = SideJob(lambda conn: calls.append(conn) or "here")
    assert lone.finish("own session") == "here" and calls[-1] == "own session"  # nobody took it: run by its owner

    def fails(conn):
        raise ValueError("copy differs")
    bad = SideJob(fails)
    with pytest.raises(ValueError):
        bad.run("free session")
    with pytest.raises(ValueError, match="copy differs"):
        bad.finish("own session")
