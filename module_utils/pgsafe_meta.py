# -*- coding: utf-8 -*-
"""The product's own schema in each target database (like Flyway's history table).

``pgsafe`` holds the run history, the step journal, backups taken, quarantined rows and
objects, fingerprints, rehearsal attestations and monitoring samples.  Every diff and every
fingerprint ignores it (``PRODUCT_SCHEMAS``).

Plain Python; statements take values as parameters, identifiers through psycopg2.sql.
"""
from __future__ import annotations

import json

META_SCHEMA = "pgsafe"
QUARANTINE_SCHEMA = "pgsafe_quarantine"
PRODUCT_SCHEMAS = (META_SCHEMA, QUARANTINE_SCHEMA)
SCHEMA_VERSION = 3

# Idempotent DDL (version 1).  Later versions append statements and bump SCHEMA_VERSION.
META_DDL = """
CREATE SCHEMA IF NOT EXISTS pgsafe;
CREATE SCHEMA IF NOT EXISTS pgsafe_quarantine;
CREATE TABLE IF NOT EXISTS pgsafe.schema_version (
    version integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgsafe.run (
    run_id text PRIMARY KEY,
    playbook text NOT NULL,
    environment text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'rolled_back')),
    check_mode boolean NOT NULL DEFAULT false,
    operator text,
    awx_job_id text,
    plan_fingerprint text,
    schema_fingerprint_before text,
    schema_fingerprint_after text,
    details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS pgsafe.journal (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step text NOT NULL,
    object text,
    status text NOT NULL CHECK (status IN ('started', 'completed', 'failed', 'skipped', 'converged')),
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    rollback_sql text
);
CREATE INDEX IF NOT EXISTS journal_run_idx ON pgsafe.journal (run_id, id);
CREATE TABLE IF NOT EXISTS pgsafe.backup (
    backup_id text PRIMARY KEY,
    taken_at timestamptz NOT NULL,
    kind text NOT NULL,
    covers jsonb NOT NULL,
    manifest_sha256 text NOT NULL,
    locations jsonb NOT NULL DEFAULT '[]'::jsonb,
    verified boolean NOT NULL DEFAULT false,
    verified_at timestamptz,
    restore_tested boolean NOT NULL DEFAULT false,
    run_id text,
    details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS pgsafe.quarantine_row (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    source_schema text NOT NULL,
    source_table text NOT NULL,
    source_pk jsonb NOT NULL,
    reason text NOT NULL,
    row_data jsonb NOT NULL,
    row_sha256 text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    restored_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_row_source_idx ON pgsafe.quarantine_row (source_schema, source_table);
CREATE TABLE IF NOT EXISTS pgsafe.quarantined_object (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    kind text NOT NULL,
    original_schema text NOT NULL,
    original_name text NOT NULL,
    quarantine_schema text NOT NULL,
    quarantine_name text NOT NULL,
    reason text NOT NULL,
    row_count bigint,
    retain_until timestamptz NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    restored_at timestamptz,
    purged_at timestamptz,
    purge_backup_id text
);
CREATE TABLE IF NOT EXISTS pgsafe.fingerprint (
    id bigserial PRIMARY KEY,
    run_id text,
    label text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    schema_fingerprint text,
    tables jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS pgsafe.attestation (
    id bigserial PRIMARY KEY,
    plan_fingerprint text NOT NULL,
    product_version text NOT NULL,
    environment text NOT NULL,
    run_id text NOT NULL,
    schema_fingerprint_before text,
    result text NOT NULL CHECK (result IN ('passed', 'failed')),
    attested_at timestamptz NOT NULL DEFAULT now(),
    details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS pgsafe.monitor_sample (
    id bigserial PRIMARY KEY,
    run_id text,
    taken_at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('baseline', 'sample')),
    metrics jsonb NOT NULL,
    breaches jsonb NOT NULL DEFAULT '[]'::jsonb
);
-- 2: a retired table's foreign keys to live tables are detached (kept here, re-added on restore),
-- so that deletes in the live tables neither cascade into set-aside rows nor fail on them.
ALTER TABLE pgsafe.quarantined_object ADD COLUMN IF NOT EXISTS detached_constraints jsonb NOT NULL DEFAULT '[]'::jsonb;
CREATE INDEX IF NOT EXISTS backup_taken_at_idx ON pgsafe.backup (taken_at DESC);
-- 3: the schema as a run found it, so that validation can judge the run from any later job.
CREATE TABLE IF NOT EXISTS pgsafe.schema_snapshot (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    label text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    schema_fingerprint text NOT NULL,
    snapshot jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS schema_snapshot_run_idx ON pgsafe.schema_snapshot (run_id, label, id DESC);
INSERT INTO pgsafe.schema_version (version) VALUES (1), (2), (3) ON CONFLICT DO NOTHING;
"""


def meta_schema_access(cur):
    """``missing``, ``no-access`` (exists but this login cannot use it) or ``ok``; never raises."""
    cur.execute("SELECT to_regnamespace('pgsafe') IS NOT NULL, "
                "has_schema_privilege('pgsafe', 'USAGE') AND has_schema_privilege('pgsafe', 'CREATE') "
                "  AND coalesce(has_table_privilege('pgsafe.schema_version', 'SELECT'), false) "
                "  WHERE to_regnamespace('pgsafe') IS NOT NULL")
    row = cur.fetchone()
    if row is None or not row[0]:
        return "missing"
    return "ok" if row[1] else "no-access"


def meta_schema_installed(cur):
    """True when the product schema exists at the current version and this login can use it."""
    if meta_schema_access(cur) != "ok":
        return False
    cur.execute("SELECT coalesce(max(version), 0) FROM pgsafe.schema_version")
    return cur.fetchone()[0] >= SCHEMA_VERSION


def ensure_meta_schema(cur):
    """Create or upgrade the product schema; returns True when something changed."""
    if meta_schema_installed(cur):
        return False
    cur.execute(META_DDL)
    return True


def journal(cur, run_id, step, status, obj=None, details=None, rollback_sql=None):
    """Append one line to the run journal (call inside the step's own transaction)."""
    cur.execute(
        "INSERT INTO pgsafe.journal (run_id, step, object, status, details, rollback_sql) "
        "VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
        (run_id, step, obj, status, json.dumps(details or {}, sort_keys=True, default=str), rollback_sql),
    )


def last_journal_entry(cur, run_id, step):
    """The newest journal entry of a step in a run, or None."""
    cur.execute("SELECT status, object, details, at FROM pgsafe.journal WHERE run_id = %s AND step = %s "
                "ORDER BY id DESC LIMIT 1", (run_id, step))
    row = cur.fetchone()
    if row is None:
        return None
    return {"status": row[0], "object": row[1], "details": row[2], "at": row[3].isoformat()}


def store_schema_snapshot(cur, snapshot_json, fingerprint, run_id, label):
    """Keep a run's schema snapshot (a JSON text) in the product schema; returns its id."""
    cur.execute("INSERT INTO pgsafe.schema_snapshot (run_id, label, schema_fingerprint, snapshot) "
                "VALUES (%s, %s, %s, %s::jsonb) RETURNING id", (run_id, label, fingerprint, snapshot_json))
    return cur.fetchone()[0]


def load_schema_snapshot(cur, run_id, label):
    """The newest snapshot a run stored under a label, or None (also when the product schema has none)."""
    cur.execute("SELECT to_regclass('pgsafe.schema_snapshot') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT snapshot FROM pgsafe.schema_snapshot WHERE run_id = %s AND label = %s ORDER BY id DESC "
                "LIMIT 1", (run_id, label))
    row = cur.fetchone()
    return row[0] if row else None
