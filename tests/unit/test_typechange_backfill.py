"""The online type change's batch sizing and its partitioned-table blockers (pure parts)."""
from __future__ import annotations

from ansible.module_utils.pgsafe_typechange_backfill import BatchSizer
from ansible.module_utils.pgsafe_typechange_online import partition_online_blockers, table_check_name


def test_batch_size_shrinks_in_proportion_when_a_batch_overruns_its_budget():
    sizer = BatchSizer(target_ms=100, most=5000, start=500)
    assert sizer.size == 500
    assert sizer.observe(1000) == 40  # 10x over: 500 * 0.8 * 100 / 1000
    assert sizer.observe(400) == 8


def test_batch_size_grows_at_most_twice_per_batch_and_never_past_the_ceiling():
    sizer = BatchSizer(target_ms=100, most=1500, start=500)
    assert sizer.observe(1) == 1000  # a very fast batch (rows already synced) says little: 2x, not 80x
    assert sizer.observe(1) == 1500  # the ceiling (batch_size)
    assert sizer.observe(0) == 1500


def test_batch_size_settles_near_the_budget():
    sizer, per_row_ms = BatchSizer(target_ms=100, most=100000, start=100), 0.05
    for _ in range(12):
        sizer.observe(sizer.size * per_row_ms)
    assert 0.6 * 100 <= sizer.size * per_row_ms <= 100


def test_batch_size_stays_at_least_the_floor_and_fixed_without_a_budget():
    sizer = BatchSizer(target_ms=100, most=5000, start=500, least=50)
    assert sizer.observe(60000) == 50
    fixed = BatchSizer(target_ms=0, most=5000, start=500)
    assert fixed.size == 5000 and fixed.observe(60000) == 5000


def _table(relkind, indexes):
    return {"relkind": relkind, "indexes": indexes}


def _index(name, columns, unique=False, constraint=None):
    return {"name": name, "columns": columns, "unique": unique, "constraint": constraint}


def test_unique_or_key_index_on_a_changed_column_of_a_partitioned_table_blocks_online_naming_rewrite():
    t = _table("p", [_index("ev_pkey", ["id", "created_at"], True, "ev_pkey"), _index("ev_export_idx", ["export_id"]),
                     _index("ev_code_key", ["code"], True)])
    (pk,) = partition_online_blockers('"public"."ev"', t, "id")
    assert "ev_pkey" in pk and '"public"."ev"' in pk and "use strategy rewrite" in pk
    assert partition_online_blockers('"public"."ev"', t, "export_id") == []  # a plain index is built per partition
    assert len(partition_online_blockers('"public"."ev"', t, "code")) == 1
    assert partition_online_blockers('"public"."ev"', _table("r", t["indexes"]), "id") == []  # plain tables: fine


def test_one_not_null_check_per_table_named_after_its_first_column():
    cols = [{"column": "id"}, {"column": "user_id"}]
    assert table_check_name(cols) == "id_pgsafe_nn"


def _fk(name, table, state="not_valid"):
    return {"name": name, "schema": "public", "table": table, "state": state, "recreate": False, "columns": ["x"],
            "ref_schema": "public", "ref_table": "p", "ref_columns": ["id"], "on_delete": "NO ACTION",
            "on_update": "NO ACTION"}


def test_fk_validations_are_grouped_by_referencing_table_in_plan_order():
    from ansible.module_utils.pgsafe_typechange_sql import validate_fk_groups
    plan = {"drop_fks": [dict(_fk("a_fk", "child-A"), recreate=True)],
            "foreign_keys": [_fk("b1", "Child_B"), _fk("a2", "child-A"), _fk("b2", "Child_B"),
                             _fk("done", "c", state="valid")]}
    groups = validate_fk_groups(plan)
    assert [[name for name, _stmt in g] for g in groups] == [["a_fk", "a2"], ["b1", "b2"]]
    assert all("VALIDATE CONSTRAINT" in repr(stmt) for g in groups for _name, stmt in g)


def test_fk_validations_of_same_named_constraints_on_different_tables_run_side_by_side():
    """Constraint names are per table: two FKs named alike on two tables are two groups, each its own table's."""
    from ansible.module_utils.pgsafe_typechange_sql import validate_fk_groups
    plan = {"drop_fks": [], "foreign_keys": [_fk("owner_fk", "a"), _fk("owner_fk", "b"), _fk("other", "a")]}
    groups = validate_fk_groups(plan)
    assert [[stmt.seq[1].strings for _name, stmt in g] for g in groups] == [[("public", "a")] * 2, [("public", "b")]]


def test_fk_validations_stay_in_one_group_when_one_attaches_to_a_partitioned_parent():
    from ansible.module_utils.pgsafe_typechange_sql import validate_fk_groups
    plan = {"drop_fks": [], "foreign_keys": [_fk("b1", "b"), _fk("parted_fk", "parted")],
            "_facts": {"partitions": {("public", "parted"): [("public", "parted_1"), ("public", "parted_2")]}}}
    groups = validate_fk_groups(plan)
    assert len(groups) == 1
    assert [name for name, _stmt in groups[0]] == ["b1", "parted_fk", "parted_fk", "parted_fk"]
