import pytest

from ansible.module_utils.pgsafe_rollback import RollbackError, plan_rollback


def entry(i, step, status="completed", obj=None, details=None, rollback_sql=None):
    return {"id": i, "step": step, "object": obj, "status": status, "details": details or {},
            "rollback_sql": rollback_sql}


JOURNAL = [
    entry(1, "typechange:rewrite", "started", '"public"."x"'),
    entry(2, "typechange:rewrite", obj='"public"."x"', rollback_sql="BEGIN; ALTER ...; COMMIT;"),
    entry(3, "fk:validate", obj="x_fk"),
    entry(4, "table_merge.create_target", obj='"public"."bazaar-vid_api_usage_metric"'),
    entry(5, "table_merge", obj='"public"."api_usage_metric"'),
    entry(6, "table_retire", obj='"public"."api_usage_metric"', rollback_sql="ALTER TABLE ... SET SCHEMA public"),
    entry(7, "schema_removal", obj='"neon_auth"', details={"backup_id": "b1"}),
    entry(8, "schema_removal", "failed", '"auth"', details={"backup_id": "b1"}),
]


def test_reverse_order_and_actions():
    actions = plan_rollback(JOURNAL)
    assert [(a["journal_id"], a["action"]) for a in actions] == [
        (7, "restore_schema"), (6, "sql"), (4, "set_aside_created_target"), (2, "sql")]
    assert actions[0]["schema"] == "neon_auth" and actions[0]["backup_id"] == "b1"


def test_resumes_after_partial_rollback():
    done = JOURNAL + [entry(9, "rollback:7"), entry(10, "rollback:6")]
    assert [a["journal_id"] for a in plan_rollback(done)] == [4, 2]


def test_schema_removal_without_backup_is_refused():
    with pytest.raises(RollbackError, match="names no backup"):
        plan_rollback([entry(1, "schema_removal", obj='"auth"')])


def test_unknown_step_is_manual():
    actions = plan_rollback([entry(1, "something_new", obj="t")])
    assert actions[0]["action"] == "manual"
