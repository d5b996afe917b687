"""Decisions about the dependents of a retyped column, and honest failure messages (no database: the catalog
reads are covered by tests/integration/test_typechange_dependents.py)."""
from __future__ import annotations

import pytest

from ansible.module_utils.pgsafe_failures import failure_message, is_transient, what_to_fix
from ansible.module_utils.pgsafe_typechange_dependents import (CARRIED, HAZARD, KINDS, RECREATED, REFUSED, classify,
                                                               collations_to_keep, identifier_pattern,
                                                               mentioning_lines, plan_dependents)

ON = ("public", "t", "c")


def dep(kind, obj="x", **extra):
    return dict({"kind": kind, "object": obj, "on": '"public"."t"."c"', "schema": "public", "table": "t",
                 "column": "c", "target": "bigint"}, **extra)


def notes():
    return {"blockers": [], "hazards": [], "online_blockers": [], "touched": []}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_decision_per_strategy_and_refusals_have_a_fix(kind):
    for strategy in ("rewrite", "online"):
        decision, why, fix = classify(dep(kind), strategy)
        assert decision in (CARRIED, RECREATED, REFUSED, HAZARD) and why
        if decision == REFUSED:
            assert fix and ("drop" in fix or "strategy rewrite" in fix or "change" in fix or "remove" in fix
                            or "detach" in fix or "keep" in fix), (kind, strategy, fix)


@pytest.mark.parametrize("kind", ["rule", "trigger definition", "policy", "generated column", "sql function body",
                                  "publication", "partition key", "typed table", "row type",
                                  "inherited column", "inheritance child", "other"])
def test_what_the_server_refuses_is_refused_in_the_plan_naming_object_reason_and_fix(kind):
    n = notes()
    listed = plan_dependents([dep(kind, "the_obj", parent='"public"."p"')], {ON}, n)
    assert listed[0]["rewrite"] == REFUSED == listed[0]["online"]
    assert len(n["blockers"]) == 1 and "the_obj" in n["blockers"][0] and "fix: " in n["blockers"][0]
    assert '"public"."t"."c"' in n["blockers"][0]


def test_a_dependent_of_an_unchanged_column_is_not_listed():
    n = notes()
    assert plan_dependents([dep("policy")], {("public", "t", "other")}, n) == [] and n == notes()


@pytest.mark.parametrize("kind", ["index", "primary key / unique", "statistics", "default", "column grant",
                                  "statistics target", "exclusion constraint", "owned sequence"])
def test_what_the_server_carries_over_is_no_blocker_for_rewrite(kind):
    n = notes()
    listed = plan_dependents([dep(kind)], {ON}, n)
    assert listed[0]["rewrite"] == CARRIED and not n["blockers"]


@pytest.mark.parametrize("kind", ["exclusion constraint", "statistics", "column grant", "statistics target",
                                  "owned sequence", "identity", "collation", "replica identity / cluster index"])
def test_what_the_online_swap_loses_refuses_online_only(kind):
    n = notes()
    plan_dependents([dep(kind, "obj_" + kind.replace(" ", "_"))], {ON}, n)
    assert not n["blockers"] and len(n["online_blockers"]) == 1
    assert "online swap would lose it" in n["online_blockers"][0] and "strategy rewrite" in n["online_blockers"][0]


def test_views_fks_and_online_index_blockers_are_listed_but_decided_where_they_were():
    n = notes()
    listed = plan_dependents([dep("view"), dep("materialized view"), dep("foreign key"),
                              dep("expression index"), dep("check constraint")], {ON}, n)
    assert [d["kind"] for d in listed] == ["view", "materialized view", "foreign key", "expression index",
                                           "check constraint"]
    assert n == notes()


def test_a_definition_that_does_not_parse_over_the_new_type_is_refused_with_the_servers_error():
    n = notes()
    plan_dependents([dep("check constraint", "chk", invalid="operator does not exist: text > integer")], {ON}, n)
    assert "chk" in n["blockers"][0] and "operator does not exist: text > integer" in n["blockers"][0]
    n = notes()
    plan_dependents([dep("default", "default value", invalid="cannot cast type integer to uuid")], {ON}, n)
    assert "drop_default" in n["blockers"][0]


def test_an_identity_column_refuses_a_non_integer_type_only():
    assert classify(dep("identity", target="bigint"), "rewrite")[0] == CARRIED
    decision, why, fix = classify(dep("identity", target="uuid"), "rewrite")
    assert decision == REFUSED and "smallint, integer or bigint" in why and "DROP IDENTITY" in fix


def test_function_bodies_and_event_triggers_are_hazards_with_their_lines():
    n = notes()
    plan_dependents([dep("function body", "f()", lines=["3: NEW.c := NEW.c + 1;"]),
                     dep("event trigger", "e (on ddl_command_end)")], {ON}, n)
    assert not n["blockers"] and not n["online_blockers"] and len(n["hazards"]) == 2
    assert "3: NEW.c := NEW.c + 1;" in n["hazards"][0] and "e (on ddl_command_end)" in n["hazards"][1]


def test_collations_to_keep_names_only_changed_columns():
    deps = [dep("collation", '"C"', collation='"C"'), dict(dep("collation", collation='"x"'), column="other")]
    assert collations_to_keep(deps, {ON}) == {ON: '"C"'}


@pytest.mark.parametrize("column,line,hit", [
    ("c", "NEW.c := NEW.c + 1;", True), ("c", "NEW.cc := 1;", False), ("c", 'NEW."c" := 1;', True),
    ("c", "NEW.C := 1;", True), ("user_id", "x := NEW.user_id;", True), ("user_id", "x := NEW.user_idx;", False),
    ("userId", 'x := NEW."userId";', True), ("userId", "x := NEW.userId;", False),
    ("c", "$c := 1", False)])
def test_the_column_is_found_as_an_identifier_quoted_or_bare(column, line, hit):
    assert bool(identifier_pattern(column).search(line)) is hit


def test_lines_of_a_body_are_reported_only_when_it_names_the_table_unless_it_is_a_trigger_function():
    body = "BEGIN\n  UPDATE other SET c = 1;\n  RETURN NEW;\nEND"
    assert mentioning_lines(body, "c", table="t_orders") == []
    assert mentioning_lines(body, "c", table=None) == ["2: UPDATE other SET c = 1;"]
    assert mentioning_lines(body.replace("other", "t_orders"), "c", "t_orders") == ["2: UPDATE t_orders SET c = 1;"]


class ServerError(Exception):
    """What psycopg2 raises, in the parts the classification reads (pgcode, diag)."""

    class Diag:
        def __init__(self, detail=None, hint=None):
            self.message_detail, self.message_hint = detail, hint

    def __init__(self, msg, pgcode, detail=None, hint=None):
        super().__init__(msg)
        self.pgcode, self.diag = pgcode, self.Diag(detail, hint)


class OperationalError(Exception):
    pgcode = None


@pytest.mark.parametrize("code", ["55P03", "40P01", "40001", "57P01", "08006", "08003"])
def test_lock_deadlock_serialization_and_connection_failures_say_re_run(code):
    exc = ServerError("boom", code)
    assert is_transient(exc)
    msg = failure_message(exc, "the type change", '"public"."t"')
    assert msg.endswith("re-run to resume") and code in msg and '"public"."t"' in msg


def test_every_lock_conflict_the_lock_helper_retries_is_a_failure_a_re_run_gets_past():
    from ansible.module_utils.pgsafe_locks import RETRYABLE

    assert RETRYABLE and all(is_transient(ServerError("boom", code)) for code in RETRYABLE)


def test_a_lost_connection_without_sqlstate_says_re_run():
    assert "re-run to resume" in failure_message(OperationalError("server closed the connection"), "x")


@pytest.mark.parametrize("code,words", [
    ("0A000", "drop it before the change"), ("42883", "works with the new type"),
    ("42804", "drop_default"), ("22P02", "converts to the new type"), ("23505", "constraint named"),
    ("53100", "free disk"), ("42501", "privilege"), ("XX000", "the cause in the error above is fixed")])
def test_a_failure_that_repeats_says_what_to_fix_and_never_re_run(code, words):
    exc = ServerError("cannot alter type of a column used in a policy definition", code,
                      detail='policy p on table t depends on column "c"')
    msg = failure_message(exc, "the type change", '"public"."t"')
    assert not is_transient(exc) and "This will fail again until" in msg and words in msg
    assert "re-run to resume" not in msg and 'policy p on table t depends on column "c"' in msg


def test_a_statement_timeout_repeats_and_a_user_cancel_does_not():
    assert not is_transient(ServerError("canceling statement due to statement timeout", "57014"))
    assert "statement_timeout" in what_to_fix(ServerError("canceling statement due to statement timeout", "57014"))
    assert is_transient(ServerError("canceling statement due to user request", "57014"))
