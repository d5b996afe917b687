# -*- coding: utf-8 -*-
"""Attestations in the product schema (``pgsafe.attestation``): the one place they are written and read.

``pgsafe_attestation`` records a rehearsal's (or a converged run's) result for a plan fingerprint;
``pgsafe_gate`` reads them back to decide its gates (module_utils/pgsafe_gates.py decides, from
these rows).
"""
from __future__ import annotations

import json

from ansible.module_utils.pgsafe_gates import rehearsed_duration
from ansible.module_utils.pgsafe_meta import meta_schema_installed

ATTESTATION_FIELDS = ("plan_fingerprint", "product_version", "environment", "run_id", "schema_fingerprint_before",
                      "result", "details")


def attestation_row(params):
    """The row an attestation writes, from the module's options (``details`` a dict)."""
    return {name: params[name] for name in ATTESTATION_FIELDS}


def record_attestation(cur, row):
    """Append ``row`` (see attestation_row) to pgsafe.attestation; its id."""
    cur.execute(
        "INSERT INTO pgsafe.attestation (plan_fingerprint, product_version, environment, run_id, "
        "schema_fingerprint_before, result, details) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
        tuple(row[name] for name in ATTESTATION_FIELDS[:-1]) + (json.dumps(row["details"], default=str),))
    return cur.fetchone()[0]


def read_attestations(cur, fingerprint):
    """Every attestation of the plan ``fingerprint``, newest first, with the rehearsal's duration (seconds)."""
    if not meta_schema_installed(cur):
        return []
    cur.execute("SELECT plan_fingerprint, result, attested_at, schema_fingerprint_before, run_id, "
                "details ->> 'schema_fingerprint_after', environment, details -> 'phases', details -> 'row_effects' "
                "FROM pgsafe.attestation WHERE plan_fingerprint = %s ORDER BY attested_at DESC", (fingerprint,))
    keys = ("plan_fingerprint", "result", "attested_at", "schema_fingerprint_before", "run_id",
            "schema_fingerprint_after", "environment", "phases", "row_effects")
    rows = [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        row["duration_seconds"] = rehearsed_duration(row.pop("phases"))
    return rows


def newest_rehearsal(cur, environment):
    """The newest passing rehearsal recorded elsewhere (fingerprint, canonical plan), or None."""
    if not meta_schema_installed(cur):
        return None
    cur.execute("SELECT plan_fingerprint, details -> 'canonical' FROM pgsafe.attestation WHERE result = 'passed' "
                "AND environment <> %s AND details ? 'canonical' ORDER BY attested_at DESC LIMIT 1", (environment,))
    row = cur.fetchone()
    return {"fingerprint": row[0], "canonical": row[1]} if row else None
