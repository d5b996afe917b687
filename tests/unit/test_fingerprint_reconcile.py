"""Fingerprint reconciliation and helpers, without a database."""
import pytest

from ansible.module_utils.pgsafe_content_hash import (EMPTY_HASH, FingerprintError, add_hashes, fold_hash,
                                                      normalize_spec, sub_hash)
from ansible.module_utils.pgsafe_fingerprint import parse_table_key
from ansible.module_utils.pgsafe_fingerprint_reconcile import reconcile
from ansible.module_utils.pgsafe_identifiers import canonical_key, table_key
from ansible.module_utils.pgsafe_validate import blocking_differences

HOSTILE = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'


def fp(**tables):
    return {"algorithm": "pgsafe-fp-v1", "tables": {k.replace("__", "."): v for k, v in tables.items()}}


def t(rows, digest, **columns):
    return {"rows": rows, "hash": digest, "columns": columns or {"id": "text"}}


def test_table_keys_round_trip_hostile_names():
    for schema, table in [("public", "bazaar-vid_exports"), ("my.schema", 'odd"name'), ("public", HOSTILE),
                          ("é schéma", "täble with space")]:
        key = table_key(schema, table)
        assert parse_table_key(key) == (schema, table)
    assert table_key("public", "bazaar-vid_exports") == "public.bazaar-vid_exports"
    assert canonical_key("bazaar-vid_exports") == "public.bazaar-vid_exports"


def test_hash_arithmetic_is_modular_and_additive():
    assert fold_hash(None) == EMPTY_HASH
    assert fold_hash(-1) == "ffffffffffffffff"
    assert fold_hash(2 ** 64 + 5) == "0000000000000005"
    a, b = fold_hash(-123456789), fold_hash(987654321987)
    total = add_hashes(a, b)
    assert sub_hash(total, b) == a and sub_hash(total, a) == b


def test_identical_fingerprints_reconcile():
    before = fp(public__a=t(3, "00000000000000aa"), public__b=t(0, EMPTY_HASH))
    result = reconcile(before, before, [])
    assert result["ok"] and not result["losses"]
    assert {x["status"] for x in result["tables"]} == {"identical"}


def test_lost_row_and_changed_value_are_flagged():
    before = fp(public__a=t(3, "00000000000000aa"), public__b=t(2, "00000000000000bb"))
    after = fp(public__a=t(2, "0000000000000011"), public__b=t(2, "00000000000000bc"))
    result = reconcile(before, after, [])
    assert not result["ok"]
    kinds = {x["table"]: (x["kind"], x["rows"]) for x in result["losses"]}
    assert kinds == {"public.a": ("rows_missing", 1), "public.b": ("values_changed", 0)}
    assert "UNEXPLAINED" in result["summary"]


def test_quarantine_accounts_rows_and_hash():
    q_hash = "0000000000000030"
    before = fp(public__exports=t(134, add_hashes("0000000000001000", q_hash)))
    after = fp(public__exports=t(132, "0000000000001000"))
    explained = reconcile(before, after, [{"kind": "quarantine", "table": "public.exports", "rows": 2,
                                           "hash": q_hash}])
    assert explained["ok"], explained
    assert explained["tables"][0]["status"] == "explained"
    # the right count with the wrong content is still a loss
    wrong = reconcile(before, after, [{"kind": "quarantine", "table": "public.exports", "rows": 2,
                                       "hash": "0000000000000031"}])
    assert not wrong["ok"] and wrong["losses"][0]["kind"] == "values_changed"
    # without the explanation: 2 rows missing
    missing = reconcile(before, after, [])
    assert missing["losses"] == [{"table": "public.exports", "kind": "rows_missing", "rows": 2,
                                  "detail": missing["tables"][0]["detail"]}]


def test_type_change_with_equal_content_is_explained_not_identical():
    before = fp(public__e=t(5, "00000000000000aa", id="text"))
    after = fp(public__e=t(5, "00000000000000aa", id="uuid"))
    result = reconcile(before, after, [])
    assert result["ok"]
    assert result["tables"][0]["status"] == "explained"
    assert result["tables"][0]["type_changes"] == ["id: text -> uuid"]


def test_merge_retire_drop_and_writes():
    before = fp(public__target=t(10, "0000000000000100"), public__source=t(4, "0000000000000040"),
                public__empty=t(0, EMPTY_HASH), public__full=t(3, "0000000000000003"),
                public__memory=t(621, "0000000000000621"))
    after = fp(public__target=t(14, add_hashes("0000000000000100", "0000000000000041")),
               pgsafe_quarantine__source=t(4, "0000000000000040"),
               public__memory=t(671, "0000000000000999"))
    explanations = [
        {"kind": "merge", "table": "public.target", "from": "public.source", "rows": 4, "hash": "0000000000000041"},
        {"kind": "retire", "table": "public.source", "to": "pgsafe_quarantine.source"},
        {"kind": "drop", "table": "public.empty"},
        {"kind": "drop", "table": "public.full"},
        {"kind": "writes", "table": "public.memory"},
    ]
    result = reconcile(before, after, explanations)
    status = {x["table"]: x["status"] for x in result["tables"]}
    assert status["public.target"] == "explained"
    assert status["public.source"] == "explained"
    assert status["pgsafe_quarantine.source"] == "explained"
    assert status["public.empty"] == "explained"
    assert status["public.memory"] == "explained_unverified"
    # a drop explains only an empty table
    assert [(x["table"], x["kind"], x["rows"]) for x in result["losses"]] == [("public.full", "table_missing", 3)]


def test_retired_copy_must_match():
    before = fp(public__source=t(4, "0000000000000040"))
    after = fp(pgsafe_quarantine__source=t(3, "0000000000000040"))
    result = reconcile(before, after, [{"kind": "retire", "table": "public.source", "to": "pgsafe_quarantine.source"}])
    assert not result["ok"] and result["losses"][0]["kind"] == "rows_missing"


def test_merge_without_hash_is_count_only():
    before = fp(public__target=t(10, "0000000000000100"))
    after = fp(public__target=t(12, "0000000000000777"))
    result = reconcile(before, after, [{"kind": "merge", "table": "public.target", "rows": 2}])
    assert result["ok"] and result["tables"][0]["status"] == "explained_unverified"
    short = reconcile(before, fp(public__target=t(11, "0")), [{"kind": "merge", "table": "public.target", "rows": 2}])
    assert not short["ok"]


def test_new_table_is_added_not_loss_and_missing_table_is_loss():
    result = reconcile(fp(public__a=t(1, "01")), fp(public__b=t(1, "01")), [])
    status = {x["table"]: x["status"] for x in result["tables"]}
    assert status == {"public.a": "loss", "public.b": "added"}


def test_bad_inputs_are_refused():
    with pytest.raises(FingerprintError):
        reconcile(fp(), fp(), [{"kind": "vanish", "table": "public.a"}])
    with pytest.raises(FingerprintError):
        reconcile(fp(), fp(), [{"kind": "quarantine", "table": "public.a"}])
    with pytest.raises(FingerprintError):
        reconcile({"algorithm": "v0", "tables": {}}, {"algorithm": "pgsafe-fp-v1", "tables": {}}, [])
    with pytest.raises(FingerprintError):
        normalize_spec({"public.a": {"id": "guid"}})
    assert normalize_spec({"bazaar-vid_exports": {"id": "uuid"}}) == {"public.bazaar-vid_exports": {"id": "uuid"}}


def test_validation_blocks_on_missing_or_invalid_index_and_blocking_severity():
    diffs = [{"kind": "index", "attribute": "presence", "left": None, "right": "CREATE INDEX", "severity": "warning"},
             {"kind": "index", "attribute": "presence", "left": "CREATE INDEX", "right": None, "severity": "info"},
             {"kind": "index", "attribute": "valid", "left": False, "right": True, "severity": "warning"},
             {"kind": "column", "attribute": "type", "left": "text", "right": "uuid", "severity": "blocking"},
             {"kind": "column", "attribute": "comment", "left": None, "right": "x", "severity": "info"}]
    blocked = blocking_differences(diffs)
    assert [(d["kind"], d["attribute"]) for d in blocked] == [("index", "presence"), ("index", "valid"),
                                                             ("column", "type")]


def test_retired_table_with_quarantined_rows_accounts_both():
    q = "0000000000000005"
    before = fp(public__source=t(5, add_hashes("0000000000000040", q)))
    after = fp(pgsafe_quarantine__source=t(4, "0000000000000040"))
    explanations = [{"kind": "quarantine", "table": "public.source", "rows": 1, "hash": q},
                    {"kind": "retire", "table": "public.source", "to": "pgsafe_quarantine.source"}]
    assert reconcile(before, after, explanations)["ok"]
    assert not reconcile(before, after, explanations[1:])["ok"]
