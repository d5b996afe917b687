"""The preflight refuses, naming the session or table, before anything runs."""
from __future__ import annotations

import pytest

from tests.pg import run_playbook, write_inventory

EXPORTS = "public.bazaar-vid_exports"


@pytest.fixture
def inventory(tmp_path, pg_server, prod_db):
    return write_inventory(tmp_path / "inv", {"staging": (pg_server, prod_db)})


def run(inventory, **extra):
    result = run_playbook("sprint90_rehearsal.yml", inventory=str(inventory), extra_vars=extra)
    return result.returncode, " ".join((result.stdout + result.stderr).split())  # YAML output wraps lines


def test_clean_preflight_passes(inventory):
    # The rehearsal then stops at its restore (this inventory has no prod to copy): the preflight passed.
    code, out = run(inventory, preflight_tables=[EXPORTS], preflight_require_owner=True)
    assert "failed in phase restore_copy" in out, out[-2000:]
    assert "preflight found" not in out


def test_lock_held_on_a_planned_table_is_named(inventory, pg_server, prod_db):
    holder = pg_server.connect(prod_db, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT count(*) FROM "bazaar-vid_exports"')
            pid = holder.get_backend_pid()
        code, out = run(inventory, preflight_tables=[EXPORTS])
    finally:
        holder.rollback()
        holder.close()
    assert code != 0
    assert f'session {pid} holds AccessShareLock on "public"."bazaar-vid_exports"' in out


def test_long_transaction_is_named(inventory, pg_server, prod_db):
    holder = pg_server.connect(prod_db, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_sleep(1.2)")
        code, out = run(inventory, preflight_max_transaction_age_seconds=1)
    finally:
        holder.rollback()
        holder.close()
    assert code != 0
    assert "has had a transaction open for" in out


def test_missing_table_and_ownership(inventory, pg_server, prod_db):
    code, out = run(inventory, preflight_tables=["public.bazaar-vid_nope"])
    assert code != 0 and 'table "public"."bazaar-vid_nope" does not exist' in out
    pg_server.execute(prod_db, "DROP ROLE IF EXISTS pgsafe_t_owner; CREATE ROLE pgsafe_t_owner")
    pg_server.execute(prod_db, 'ALTER TABLE "bazaar-vid_exports" OWNER TO pgsafe_t_owner')
    pg_server.execute(prod_db, "DROP ROLE IF EXISTS pgsafe_t_migrator; "
                               "CREATE ROLE pgsafe_t_migrator LOGIN PASSWORD %s",
                      (pg_server.libpq["password"],))
    try:
        pg_server.execute(prod_db, "GRANT CONNECT ON DATABASE {0} TO pgsafe_t_migrator".format(f'"{prod_db}"'))
        code, out = run(inventory, pg_user="pgsafe_t_migrator", preflight_tables=[EXPORTS],
                        preflight_require_owner=True)
        assert code != 0
        assert 'must be owner of table "public"."bazaar-vid_exports"' in out
        pg_server.execute(prod_db, "CREATE SCHEMA IF NOT EXISTS pgsafe")  # installed by another login
        code, out = run(inventory, pg_user="pgsafe_t_migrator")
        assert code != 0
        assert "login pgsafe_t_migrator cannot use the product schema pgsafe" in out
    finally:
        pg_server.execute(prod_db, 'ALTER TABLE "bazaar-vid_exports" OWNER TO postgres')
        pg_server.execute(prod_db, f'REVOKE ALL ON DATABASE "{prod_db}" FROM pgsafe_t_migrator')
        pg_server.execute(prod_db, "DROP ROLE pgsafe_t_migrator; DROP ROLE pgsafe_t_owner")
