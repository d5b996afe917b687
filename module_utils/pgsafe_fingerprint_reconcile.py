# -*- coding: utf-8 -*-
"""Reconciling two data fingerprints: every difference explained as planned, or flagged as loss.

``reconcile(before, after, explanations)`` (plain Python, no database) explains each table's
difference as planned (a cast, quarantined rows, merged rows, a table retired to the quarantine
schema, a drop of an empty table) or flags it as loss.  Hashes are additive modulo 2**64
(pgsafe_content_hash), which is how quarantined and merged rows are accounted for.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_content_hash import FingerprintError, add_hashes, sub_hash
from ansible.module_utils.pgsafe_identifiers import canonical_key

# --------------------------------------------------------------------------- reconciliation
EXPLANATION_KINDS = {
    "cast": "a planned type change of a column; content must still compare equal after normalisation "
            "(value_changing: true accepts a different hash with the same row count)",
    "quarantine": "rows moved to pgsafe.quarantine_row: rows and hash are subtracted from before",
    "merge": "rows merged into this table from another (rows, optional hash) are added to before",
    "delete": "rows deliberately deleted (rows, optional hash) are subtracted from before",
    "retire": "the table was moved to another name/schema (to); its copy there must equal before",
    "rename": "the table was renamed (to); the renamed table must equal before",
    "drop": "the table was dropped; allowed when it was empty before, or with backup_id, rows and hash "
            "(taken right before the drop) equal to before",
    "writes": "the application may write to this table during the window: growth is accepted, "
              "the content hash is not verifiable",
}


def validate_explanation(explanation):
    if not isinstance(explanation, dict) or explanation.get("kind") not in EXPLANATION_KINDS:
        raise FingerprintError("an explanation must be a dict with kind one of {0}: got {1!r}".format(
            ", ".join(sorted(EXPLANATION_KINDS)), explanation))
    if not explanation.get("table"):
        raise FingerprintError("explanation {0!r} needs a table (schema.table)".format(explanation))
    kind = explanation["kind"]
    if kind in ("quarantine", "merge", "delete") and not isinstance(explanation.get("rows"), int):
        raise FingerprintError("explanation {0!r} needs rows (an integer count)".format(explanation))
    if kind in ("retire", "rename") and not explanation.get("to"):
        raise FingerprintError("explanation {0!r} needs to (the new schema.table)".format(explanation))
    return explanation


def tables_of(fp):
    tables = fp.get("tables", fp) if isinstance(fp, dict) else {}
    return {canonical_key(k): v for k, v in tables.items()}


def _type_changes(b, a):
    bc, ac = (b or {}).get("columns") or {}, (a or {}).get("columns") or {}
    changes = ["{0}: {1} -> {2}".format(c, bc[c], ac[c]) for c in sorted(set(bc) & set(ac)) if bc[c] != ac[c]]
    changes += ["{0}: dropped".format(c) for c in sorted(set(bc) - set(ac))]
    changes += ["{0}: added".format(c) for c in sorted(set(ac) - set(bc))]
    return changes


def _explanations_by_table(explanations):
    by_table, moved_to = {}, {}
    for explanation in explanations or ():
        validate_explanation(explanation)
        by_table.setdefault(canonical_key(explanation["table"]), []).append(explanation)
    for key, items in by_table.items():
        for e in items:
            if e["kind"] in ("retire", "rename"):
                moved_to[canonical_key(e["to"])] = key
    return by_table, moved_to


def _expected(b, items):
    """Rows and hash the table should hold after the quarantines, deletes and merges; whether the hash is known."""
    expected_rows, expected_hash, hash_known = b["rows"], b["hash"], True
    notes = []
    for e in items:
        if e["kind"] in ("quarantine", "delete"):
            expected_rows -= e["rows"]
            if e.get("hash"):
                expected_hash = sub_hash(expected_hash, e["hash"])
            else:
                hash_known = False
            notes.append("{0} {1} rows".format("quarantined" if e["kind"] == "quarantine" else "deleted", e["rows"]))
        elif e["kind"] == "merge":
            expected_rows += e["rows"]
            if e.get("hash"):
                expected_hash = add_hashes(expected_hash, e["hash"])
            else:
                hash_known = False
            notes.append("merged {0} rows{1}".format(e["rows"], " from " + e["from"] if e.get("from") else ""))
    return expected_rows, expected_hash, hash_known, notes


def _judge_move(entry, e, a_tables, expected, loss):
    """A table retired or renamed: its copy under the new name must hold what was expected."""
    expected_rows, expected_hash, hash_known, notes = expected
    key = entry["table"]
    target = a_tables.get(canonical_key(e["to"]))
    rows, digest = (e.get("rows"), e.get("hash")) if e.get("rows") is not None else \
        ((target or {}).get("rows"), (target or {}).get("hash"))
    entry["expected_rows"] = expected_rows
    where = "{0} to {1}".format(e["kind"], e["to"])
    if rows is None:
        entry.update(status="loss", detail="{0}, but that table was not fingerprinted".format(where))
        loss(key, "table_missing", expected_rows, entry["detail"])
    elif rows != expected_rows:
        entry.update(status="loss", detail=", ".join(notes + ["{0} holds {1} rows, expected {2}".format(
            where, rows, expected_rows)]))
        if rows < expected_rows:
            loss(key, "rows_missing", expected_rows - rows, entry["detail"])
        else:
            loss(key, "rows_added", rows - expected_rows, entry["detail"])
    elif digest is not None and hash_known and digest != expected_hash:
        entry.update(status="loss", detail=", ".join(notes + ["{0}: same row count, content hash differs".format(
            where)]))
        loss(key, "values_changed", 0, entry["detail"])
    else:
        entry.update(status="explained" if digest is not None and hash_known else "explained_unverified",
                     detail=", ".join(notes + ["{0}, {1} rows{2}".format(
                         where, rows, ", hash equal" if digest is not None and hash_known else "")]))


def _judge_missing(entry, b, items, expected, loss):
    """A table gone after: only an empty table, or one dropped after a verified backup holding its rows."""
    expected_rows, _, _, notes = expected
    kinds = [e["kind"] for e in items]
    # A table with rows may be dropped only after a verified backup, by a step that
    # fingerprinted it right before the drop: same rows and content hash as before.
    backed_up = [e for e in items if e["kind"] == "drop" and e.get("backup_id")
                 and e.get("rows") == b["rows"] and e.get("hash") in (None, b["hash"])]
    if "drop" in kinds and expected_rows == 0:
        entry.update(status="explained", expected_rows=0, detail=", ".join(
            notes + ["empty table dropped as planned"]))
    elif backed_up:
        e = backed_up[-1]
        entry.update(status="explained" if e.get("hash") else "explained_unverified", expected_rows=0,
                     detail=", ".join(notes + ["dropped after verified backup {0} holding its {1} rows{2}".format(
                         e["backup_id"], b["rows"], ", content hash equal" if e.get("hash") else "")]))
    else:
        entry.update(status="loss", expected_rows=expected_rows,
                     detail="table missing after ({0} rows before){1}".format(
                         b["rows"], "; a drop is only explained for an empty table" if "drop" in kinds else ""))
        loss(entry["table"], "table_missing", expected_rows, entry["detail"])


def _judge_present(entry, a, items, expected, loss):
    """A table on both sides: rows and content hash against what was expected."""
    expected_rows, expected_hash, hash_known, notes = expected
    key = entry["table"]
    entry["expected_rows"] = expected_rows
    writes = any(e["kind"] == "writes" for e in items)
    value_changing_cast = any(e["kind"] == "cast" and e.get("value_changing") for e in items)
    if entry["type_changes"]:
        notes = notes + ["types: " + "; ".join(entry["type_changes"])]
    if a["rows"] == expected_rows and a["hash"] == expected_hash and hash_known:
        entry.update(status="identical" if not items and not entry["type_changes"] else "explained",
                     detail=", ".join(notes + ["rows and content hash match"]))
    elif a["rows"] == expected_rows and not hash_known:
        entry.update(status="explained_unverified",
                     detail=", ".join(notes + ["row count matches; no hash given for the planned rows"]))
    elif writes and a["rows"] >= expected_rows:
        entry.update(status="explained_unverified",
                     detail=", ".join(notes + ["{0} rows written during the window (allowed)".format(
                         a["rows"] - expected_rows)]))
    elif a["rows"] < expected_rows:
        entry.update(status="loss", detail=", ".join(notes + ["{0} rows missing".format(expected_rows - a["rows"])]))
        loss(key, "rows_missing", expected_rows - a["rows"], entry["detail"])
    elif a["rows"] > expected_rows:
        entry.update(status="loss", detail=", ".join(notes + ["{0} unexplained extra rows".format(
            a["rows"] - expected_rows)]))
        loss(key, "rows_added", a["rows"] - expected_rows, entry["detail"])
    elif value_changing_cast:
        entry.update(status="explained_unverified",
                     detail=", ".join(notes + ["row count matches; a value-changing cast was planned"]))
    else:
        entry.update(status="loss", detail=", ".join(notes + ["same row count, content hash differs: "
                                                               "values changed"]))
        loss(key, "values_changed", 0, entry["detail"])


def reconcile(before, after, explanations=()):
    """Explain every difference between two fingerprints, or flag it.

    ``before``/``after``: fingerprint() results (or their ``tables`` maps).  ``explanations``: list
    of dicts ``{"kind": <EXPLANATION_KINDS>, "table": "schema.table", ...}``.

    Returns ``{"ok", "tables": [{table, status, before_rows, after_rows, expected_rows, explained_by,
    type_changes, detail}], "losses": [{table, kind, rows, detail}], "summary"}``; ``status`` is one
    of identical, explained, explained_unverified, added, loss.  Every unexplained difference is in
    ``losses`` (kinds: rows_missing, values_changed, rows_added, table_missing, hash_mismatch).
    """
    if isinstance(before, dict) and isinstance(after, dict) and before.get("algorithm") and after.get("algorithm") \
            and before["algorithm"] != after["algorithm"]:
        raise FingerprintError("cannot compare fingerprints of different algorithms ({0} vs {1}): take both "
                               "with the same pgsafe version".format(before["algorithm"], after["algorithm"]))
    b_tables, a_tables = tables_of(before), tables_of(after)
    by_table, moved_to = _explanations_by_table(explanations)
    rows_out, losses = [], []

    def loss(key, kind, rows, detail):
        losses.append({"table": key, "kind": kind, "rows": rows, "detail": detail})

    for key in sorted(set(b_tables) | set(a_tables)):
        b, a = b_tables.get(key), a_tables.get(key)
        items = by_table.get(key, [])
        entry = {"table": key, "before_rows": b["rows"] if b else None, "after_rows": a["rows"] if a else None,
                 "expected_rows": None, "explained_by": [e["kind"] for e in items],
                 "type_changes": _type_changes(b, a), "detail": ""}
        rows_out.append(entry)
        if b is None:
            if key in moved_to:
                entry.update(status="explained", detail="new name of {0}".format(moved_to[key]))
            else:
                entry.update(status="added", detail="table not in the before fingerprint")
            continue
        expected = _expected(b, items)
        moves = [e for e in items if e["kind"] in ("retire", "rename")]
        if moves:
            _judge_move(entry, moves[0], a_tables, expected, loss)
        elif a is None:
            _judge_missing(entry, b, items, expected, loss)
        else:
            _judge_present(entry, a, items, expected, loss)
    return {"ok": not losses, "tables": rows_out, "losses": losses, "summary": _summary(rows_out, losses)}


def _summary(rows_out, losses):
    counts = {}
    for entry in rows_out:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    summary = ", ".join("{0} {1}".format(n, status) for status, n in sorted(counts.items()))
    if losses:
        summary += "; UNEXPLAINED: " + "; ".join("{0} {1} ({2} rows)".format(x["table"], x["kind"], x["rows"])
                                                 for x in losses)
    return summary
