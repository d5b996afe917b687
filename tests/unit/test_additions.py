"""Unit tests of module_utils/pgsafe_additions.py: normalisation errors, statement rendering, decisions.

No database: catalog facts are built by hand in the shape gather_facts() returns.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from ansible.module_utils.pgsafe_additions import (
    AdditionError,
    canonical_expression,
    create_index_statements,
    decide,
    default_statements,
    expressions_match,
    function_names,
    normalise_additions,
    not_null_constraint_name,
    object_name,
    objects_sha256,
    render,
    rollback_statements,
    set_not_null_statements,
    statements_sha256,
)
from ansible.module_utils.pgsafe_hazards import HAZARDS

EXPORTS = "bazaar-vid_exports"


def one(**raw):
    return normalise_additions([raw])[0]


def col(type_="text", not_null=False, default=None, pending=False):
    return {"type": type_, "not_null": not_null, "default": default, "identity": "", "generated": "", "pending": pending}


def facts(rows=10, columns=None, column=None, **extra):
    columns = {"id": col("uuid", True), "createdAt": col("timestamp with time zone")} if columns is None else columns
    base = {"table": True, "relkind": "r", "oid": 1, "rows": rows, "columns": columns, "pk": ["id"],
            "column": columns.get(column), "volatile": [], "default_matches": None, "index": None, "constraint": None}
    base.update(extra)
    return base


# --------------------------------------------------------------------------- normalisation
def test_normalise_fills_defaults_and_splits_names():
    items = normalise_additions([
        {"kind": "add_column", "table": EXPORTS, "column": "createdAt", "type": "timestamptz", "default": "now()"},
        {"kind": "create_index", "table": "public." + EXPORTS, "name": "exports_createdAt_idx", "columns": ["createdAt"]},
        {"kind": "set_default", "table": '"odd.schema"."t"', "column": "n", "default": 0},
        {"kind": "drop_default", "table": EXPORTS, "column": "status"},
        {"kind": "set_not_null", "table": EXPORTS, "column": "createdAt"},
    ])
    assert items[0] == {"kind": "add_column", "schema": "public", "table": EXPORTS, "column": "createdAt",
                        "type": "timestamp with time zone", "default": "now()", "not_null": False}
    assert items[1]["unique"] is False and items[1]["method"] == "btree" and items[1]["where"] is None
    assert items[2]["schema"] == "odd.schema" and items[2]["default"] == "0"
    assert object_name("odd.schema", "t", "n") == '"odd.schema".t.n'
    assert normalise_additions(None) == []


@pytest.mark.parametrize(("raw", "words"), [
    ({"kind": "add_colum", "table": "t"}, ["schema_additions[0].kind", "add_colum", "use one of", "add_column"]),
    ({"kind": "add_column", "table": "t", "column": "c", "type": "text", "nullable": True},
     ["schema_additions[0].nullable", "unknown key", "use only", "not_null"]),
    ({"kind": "add_column", "table": "t", "column": "c"}, ["schema_additions[0].type", "missing", "add_column needs"]),
    ({"kind": "create_index", "table": "t", "name": "i", "columns": "c"},
     ["schema_additions[0].columns", "non-empty list"]),
    ({"kind": "create_index", "table": "t", "name": "i", "columns": ["c"], "unique": "yes"},
     ["schema_additions[0].unique", "true or false"]),
    ({"kind": "create_index", "table": "t", "name": "i", "columns": ["c"], "method": "rtree"},
     ["schema_additions[0].method", "rtree", "btree"]),
    ({"kind": "create_index", "table": "t", "name": "i", "columns": ["c"], "unique": True, "method": "gin"},
     ["schema_additions[0].unique", "only btree"]),
    ({"kind": "create_index", "table": "t", "name": "i", "columns": ["c", "c"]}, ["listed twice"]),
    ({"kind": "set_default", "table": "t", "column": "c", "default": "1; DROP TABLE t"},
     ["schema_additions[0].default", "single SQL expression"]),
    ({"kind": "create_index", "table": "t", "name": "i", "columns": ["c"], "where": "a -- b"},
     ["schema_additions[0].where", "comment"]),
    ({"kind": "set_default", "table": "t", "column": "c", "default": ["x"]}, ["schema_additions[0].default", "expression"]),
    ({"kind": "add_column", "table": "t", "column": "c", "type": "int; drop"}, ["schema_additions[0].type", "plain type"]),
    ({"kind": "add_column", "table": "t", "column": "c", "type": "bigserial"}, ["schema_additions[0].type", "nextval"]),
    ({"kind": "set_not_null", "table": "a.b.c", "column": "c"}, ["schema_additions[0].table", "schema.table"]),
    ({"kind": "set_not_null", "table": 5, "column": "c"}, ["schema_additions[0].table", "string"]),
    ({"kind": "set_not_null", "table": "t", "column": "x" * 64}, ["schema_additions[0].column", "63 bytes"]),
    ({"kind": "set_not_null", "table": "t", "column": ""}, ["schema_additions[0].column", "non-empty"]),
    ("add_column t.c", ["schema_additions[0]", "mapping with a kind"]),
])
def test_normalise_errors_name_item_key_and_fix(raw, words):
    with pytest.raises(AdditionError) as err:
        normalise_additions([raw])
    for word in words:
        assert word in str(err.value)
    assert isinstance(err.value, ValueError)


def test_normalise_refuses_the_same_change_twice_and_a_non_list():
    with pytest.raises(AdditionError, match=r"schema_additions\[1\]: drop_default of public.t.c is already given by "
                                            r"schema_additions\[0\]"):
        normalise_additions([{"kind": "set_default", "table": "t", "column": "c", "default": "1"},
                             {"kind": "drop_default", "table": "t", "column": "c"}])
    with pytest.raises(AdditionError, match="must be a list"):
        normalise_additions({"kind": "set_not_null"})


# --------------------------------------------------------------------------- rendering
def test_add_column_statement_quotes_every_identifier():
    item = one(kind="add_column", table=EXPORTS, column="createdAt", type="timestamptz", default="now()",
               not_null=True)
    st = decide(item, facts(columns={"id": col("uuid", True)}))["statements"]
    assert st == [{"sql": 'ALTER TABLE "public"."bazaar-vid_exports" ADD COLUMN "createdAt" timestamp with time zone '
                          'DEFAULT now() NOT NULL', "lock_level": "ACCESS EXCLUSIVE", "transactional": True}]
    assert rollback_statements(item) == ['ALTER TABLE "public"."bazaar-vid_exports" DROP COLUMN "createdAt"']


def test_hostile_names_stay_names():
    item = one(kind="drop_default", table='"x""; DROP TABLE y; --"', column='a"b')
    assert default_statements(item, None)[0]["sql"] == \
        'ALTER TABLE "public"."x""; DROP TABLE y; --" ALTER COLUMN "a""b" DROP DEFAULT'


def test_create_index_statements_by_state():
    item = one(kind="create_index", table=EXPORTS, name="exports_userId_idx", columns=["userId", "createdAt"],
               unique=True, where="\"deletedAt\" IS NULL")
    create = ('CREATE UNIQUE INDEX CONCURRENTLY "exports_userId_idx" ON "public"."bazaar-vid_exports" USING btree '
              '("userId", "createdAt") WHERE "deletedAt" IS NULL')
    assert create_index_statements(item) == [{"sql": create, "lock_level": "SHARE UPDATE EXCLUSIVE",
                                              "transactional": False}]
    invalid = create_index_statements(item, "invalid")
    assert [s["sql"] for s in invalid] == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."exports_userId_idx"', create]
    assert not any(s["transactional"] for s in invalid)
    assert create_index_statements(item, "valid") == []
    gin = one(kind="create_index", table="t", name="t_doc_idx", columns=["doc"], method="GIN")
    assert create_index_statements(gin)[0]["sql"] == \
        'CREATE INDEX CONCURRENTLY "t_doc_idx" ON "public"."t" USING gin ("doc")'


def test_set_not_null_statements_resume_from_any_state():
    item = one(kind="set_not_null", table=EXPORTS, column="createdAt")
    k = not_null_constraint_name(item)
    assert k == "createdAt_pgsafe_set_nn"
    t = '"public"."bazaar-vid_exports"'
    full = [f'ALTER TABLE {t} ADD CONSTRAINT "{k}" CHECK ("createdAt" IS NOT NULL) NOT VALID',
            f'ALTER TABLE {t} VALIDATE CONSTRAINT "{k}"',
            f'ALTER TABLE {t} ALTER COLUMN "createdAt" SET NOT NULL',
            f'ALTER TABLE {t} DROP CONSTRAINT "{k}"']
    statements = set_not_null_statements(item)
    assert [s["sql"] for s in statements] == full
    assert [s["lock_level"] for s in statements] == ["ACCESS EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "ACCESS EXCLUSIVE",
                                                     "ACCESS EXCLUSIVE"]
    assert all(s["transactional"] for s in statements)
    assert [s["sql"] for s in set_not_null_statements(item, constraint="not_valid")] == full[1:]
    assert [s["sql"] for s in set_not_null_statements(item, constraint="valid")] == full[2:]
    assert [s["sql"] for s in set_not_null_statements(item, column_not_null=True, constraint="valid")] == full[3:]
    assert set_not_null_statements(item, column_not_null=True) == []


def test_render_refuses_what_needs_a_connection():
    from psycopg2 import sql
    assert render(sql.SQL("SELECT {0}").format(sql.Identifier("a", 'b"c'))) == 'SELECT "a"."b""c"'
    with pytest.raises(TypeError):
        render(sql.Literal("x"))


def test_statements_sha256_is_of_the_canonical_json():
    step = {"object": "public.t.c", "statements": [{"sql": "X", "lock_level": "ACCESS EXCLUSIVE", "transactional": True}]}
    canonical = '[{"lock_level":"ACCESS EXCLUSIVE","sql":"X","transactional":true}]'
    assert statements_sha256(step) == hashlib.sha256(canonical.encode()).hexdigest()
    other = {"object": "public.t.c", "statements": [{"sql": "Y", "lock_level": "ACCESS EXCLUSIVE", "transactional": True}]}
    assert objects_sha256([step]) == {"public.t.c": statements_sha256(step)}
    both = objects_sha256([step, other])["public.t.c"]
    assert both == hashlib.sha256(json.dumps(step["statements"] + other["statements"], sort_keys=True,
                                             separators=(",", ":")).encode()).hexdigest()


# --------------------------------------------------------------------------- expressions
def test_function_names_ignore_literals():
    assert function_names("gen_random_uuid()") == ["gen_random_uuid"]
    assert function_names("'random()' || lower(x) || \"myFn\" (1)") == ["lower", "myFn"]
    assert function_names("now() AT TIME ZONE 'utc'") == ["now"]
    assert function_names("'a'") == []


@pytest.mark.parametrize(("declared", "stored"), [
    ("'pending'", "'pending'::text"), ("'pending'", "'pending'::character varying"), ("now()", "now()"),
    ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"), ("random()::text", "(random())::text"),
    ("nextval('s')", "nextval('s'::regclass)"), ("1 + 2*3", "(1 + (2 * 3))"), ("(0)", "0"),
    ("deleted_at IS NULL", "(deleted_at IS NULL)"), ("status = 'active'", "((status)::text = 'active'::text)"),
])
def test_expressions_match_the_servers_print(declared, stored):
    assert expressions_match(declared, stored)


@pytest.mark.parametrize(("declared", "stored"), [
    ("'Pending'", "'pending'::text"), ("now()", "clock_timestamp()"), ("1", None), (None, "1"), ("'a b'", "'ab'"),
])
def test_expressions_differ(declared, stored):
    assert not expressions_match(declared, stored)
    assert expressions_match(None, None)


def test_canonical_expression_keeps_quoted_text():
    assert canonical_expression(' ( "userId" = \'A B\' ) ') == "\"userId\"='A B'"


# --------------------------------------------------------------------------- decisions
def test_add_column_refusals_name_table_and_rows():
    nn = one(kind="add_column", table=EXPORTS, column="region", type="text", not_null=True)
    step = decide(nn, facts(rows=42))
    assert not step["precheck"]["ok"] and not step["converged"]
    assert "bazaar-vid_exports, which has 42 rows" in step["precheck"]["problems"][0]
    assert decide(nn, facts(rows=0))["precheck"]["ok"]
    volatile = one(kind="add_column", table=EXPORTS, column="token", type="uuid", default="gen_random_uuid()")
    step = decide(volatile, facts(rows=3, volatile=["gen_random_uuid"]))
    assert "volatile function(s) gen_random_uuid" in step["precheck"]["problems"][0]
    assert "set_default" in step["precheck"]["problems"][0] and "(3 rows)" in step["precheck"]["problems"][0]
    empty = decide(volatile, facts(rows=0, volatile=["gen_random_uuid"]))
    assert empty["precheck"]["ok"] and empty["hazards"] == ["access_exclusive_lock", "rewrite"]


def test_add_column_converged_or_conflicting():
    item = one(kind="add_column", table=EXPORTS, column="createdAt", type="timestamptz")
    step = decide(item, facts(column="createdAt"))
    assert step["converged"] and step["statements"] == [] and step["hazards"] == [] and step["precheck"]["ok"]
    other = one(kind="add_column", table=EXPORTS, column="createdAt", type="text")
    assert "pgsafe_column_types" in decide(other, facts(column="createdAt"))["precheck"]["problems"][0]


def test_create_index_decisions():
    item = one(kind="create_index", table=EXPORTS, name="exports_createdAt_idx", columns=["createdAt"])
    fresh = decide(item, facts())
    assert fresh["hazards"] == ["index_build", "non_transactional", "table_scan"]
    assert fresh["object"] == "public.exports_createdAt_idx" and fresh["tables"] == ["public.bazaar-vid_exports"]
    idx = {"relkind": "i", "own": True, "valid": False, "unique": False, "method": "btree", "predicate": None,
           "columns": ["createdAt"]}
    assert len(decide(item, facts(index=idx))["statements"]) == 2
    valid = decide(item, facts(index=dict(idx, valid=True)))
    assert valid["converged"] and valid["statements"] == []
    differs = decide(item, facts(index=dict(idx, valid=True, unique=True)))
    assert not differs["precheck"]["ok"] and "another definition" in differs["precheck"]["problems"][0]
    assert "not an index" in decide(item, facts(index=dict(idx, own=False)))["precheck"]["problems"][0]
    missing = one(kind="create_index", table=EXPORTS, name="i", columns=["nope"])
    assert "nope do not exist" in decide(missing, facts())["precheck"]["problems"][0]
    assert "partitioned" in decide(item, facts(relkind="p"))["precheck"]["problems"][0]


def test_set_not_null_and_defaults_decisions():
    nn = one(kind="set_not_null", table=EXPORTS, column="createdAt")
    step = decide(nn, facts(column="createdAt"))
    assert step["hazards"] == ["access_exclusive_lock", "table_scan"] and len(step["statements"]) == 4
    assert step["rollback_sql"] == ['ALTER TABLE "public"."bazaar-vid_exports" ALTER COLUMN "createdAt" DROP NOT NULL']
    leftover = decide(nn, facts(column="id", constraint={"validated": True, "check_ok": True}))
    assert [s["sql"].split()[-2] for s in leftover["statements"]] == ["CONSTRAINT"]
    assert decide(nn, facts(column="createdAt", constraint={"validated": False, "check_ok": False}))["precheck"]["problems"]
    assert "add_column item first" in decide(one(kind="set_not_null", table=EXPORTS, column="x"),
                                             facts())["precheck"]["problems"][0]
    sd = one(kind="set_default", table=EXPORTS, column="createdAt", default="now()")
    step = decide(sd, facts(column="createdAt", default_matches=False))
    assert step["hazards"] == ["access_exclusive_lock"] and step["rollback_sql"] == [
        'ALTER TABLE "public"."bazaar-vid_exports" ALTER COLUMN "createdAt" DROP DEFAULT']
    assert decide(sd, facts(column="createdAt", default_matches=True))["converged"]
    dd = one(kind="drop_default", table=EXPORTS, column="createdAt")
    assert decide(dd, facts(column="createdAt"))["converged"]
    cols = {"createdAt": col("timestamp with time zone", default="now()")}
    step = decide(dd, facts(columns=cols, column="createdAt"))
    assert step["rollback_sql"] == ['ALTER TABLE "public"."bazaar-vid_exports" ALTER COLUMN "createdAt" SET DEFAULT now()']


def test_missing_table_and_hazard_vocabulary():
    item = one(kind="set_default", table="gone", column="c", default="1")
    step = decide(item, dict(facts(), table=False, relkind=None, rows=None))
    assert "does not exist" in step["precheck"]["problems"][0] and step["precheck"]["rows"] is None
    view = decide(item, dict(facts(), table=False, relkind="v"))
    assert "not a table (relkind v)" in view["precheck"]["problems"][0]
    for raw, fx in [({"kind": "add_column", "table": "t", "column": "n", "type": "int"}, facts()),
                    ({"kind": "create_index", "table": "t", "name": "i", "columns": ["id"]}, facts()),
                    ({"kind": "set_not_null", "table": "t", "column": "createdAt"}, facts(column="createdAt"))]:
        assert set(decide(one(**raw), fx)["hazards"]) <= set(HAZARDS)


# --------------------------------------------------------------------------- the module's documentation
def test_module_documentation_matches_its_argument_spec():
    import importlib.util
    from pathlib import Path

    import yaml

    from ansible.module_utils.pgsafe_connection import CONNECTION_ARGUMENT_SPEC

    path = Path(__file__).resolve().parents[2] / "library" / "pgsafe_schema_additions.py"
    spec = importlib.util.spec_from_file_location("pgsafe_schema_additions_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Captured(Exception):
        pass

    def capture(argument_spec, **_):
        raise Captured(argument_spec)

    mod.PgsafeModule = capture
    with pytest.raises(Captured) as got:
        mod.main()
    argument_spec = got.value.args[0]
    documented = yaml.safe_load(mod.DOCUMENTATION)["options"]
    own = {k: v for k, v in argument_spec.items() if k not in CONNECTION_ARGUMENT_SPEC}
    assert set(own) == set(documented)
    for name, option in own.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert bool(doc.get("required")) == bool(option.get("required")), name
        assert doc.get("elements") == option.get("elements"), name


def test_moved_objects_name_what_differs_from_the_reviewed_plan():
    from ansible.module_utils.pgsafe_additions import objects_sha256
    from ansible.module_utils.pgsafe_additions_apply import additions_diff, moved_objects

    def step(obj, sql_text, converged=False):
        return {"object": obj, "kind": "add_column", "converged": converged, "before": "absent", "after": "present",
                "statements": [{"sql": sql_text, "lock_level": "ACCESS EXCLUSIVE", "transactional": True}]}

    steps = [step("a", "ALTER a"), step("b", "ALTER b")]
    reviewed = objects_sha256(steps)
    assert moved_objects(steps, reviewed) == []
    moved = moved_objects([step("a", "ALTER a2"), step("c", "ALTER c")], reviewed)
    assert moved[0] == "b: not among the additions (the reviewed plan had it)"
    assert moved[1].startswith("a: the statements it would run differ") and moved[2] == "c: not in the reviewed plan"
    assert moved_objects([step("c", "ALTER c", converged=True), *steps], reviewed) == []  # converged: runs nothing
    assert additions_diff(steps) == ("a (add_column): absent\nb (add_column): absent\n",
                                     "a (add_column): present\nb (add_column): present\n")
