"""The modules as playbooks call them: pgsafe_fingerprint (store, idempotent, check mode) and
pgsafe_fingerprint_compare (explained vs unexplained differences)."""
from __future__ import annotations

import json
import os

from tests import pg

PLAYBOOK = """
- name: Fingerprint modules
  hosts: all
  gather_facts: false
  module_defaults:
    pgsafe_fingerprint: &conn
      login_host: "{{ pg_host }}"
      login_port: "{{ pg_port }}"
      login_user: "{{ pg_user }}"
      login_password: "{{ pg_password }}"
      login_db: "{{ pg_database }}"
      ssl_mode: disable
    pgsafe_fingerprint_compare: *conn
    community.postgresql.postgresql_query: *conn
  tasks:
    - name: Check mode stores nothing
      pgsafe_fingerprint: {label: before, run_id: r1, store: true}
      check_mode: true
      register: fp_check
    - name: Store the before fingerprint
      pgsafe_fingerprint: {label: before, run_id: r1, store: true}
      register: fp1
    - name: Store it again
      pgsafe_fingerprint: {label: before, run_id: r1, store: true}
      register: fp2
    - name: Compare now, nothing changed
      pgsafe_fingerprint_compare: {run_id: r1}
      register: cmp_same
    - name: Lose a row, change another table's row
      community.postgresql.postgresql_query:
        query: >-
          DELETE FROM "bazaar-vid_metric" WHERE id = (SELECT id FROM "bazaar-vid_metric" ORDER BY id LIMIT 1);
          DELETE FROM "bazaar-vid_agent_message" WHERE id = (SELECT id FROM "bazaar-vid_agent_message" ORDER BY id LIMIT 1)
    - name: Compare, one loss explained
      pgsafe_fingerprint_compare:
        run_id: r1
        fail_on_loss: true
        explanations: [{kind: delete, table: public.bazaar-vid_agent_message, rows: 1}]
      register: cmp_lost
      ignore_errors: true
    - name: Save the results
      ansible.builtin.copy:
        content: "{{ {'fp_check': fp_check, 'fp1': fp1, 'fp2': fp2, 'cmp_same': cmp_same, 'cmp_lost': cmp_lost} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      delegate_to: localhost
"""


def test_fingerprint_and_compare_modules(pg_server, prod_db, tmp_path):
    inv = pg.write_inventory(tmp_path / "inv", {"prod": (pg_server, prod_db)})
    book = tmp_path / "fp.yml"
    book.write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    result = pg.run_playbook(os.path.relpath(book, pg.ROOT / "playbooks"), inventory=str(inv),
                             extra_vars={"out": str(out)})
    assert result.returncode == 0, result.stdout[-3000:]
    r = json.loads(out.read_text())
    assert r["fp_check"]["stored_id"] is None and r["fp_check"]["tables"]["public.bazaar-vid_metric"]["rows"] == 389
    assert r["fp1"]["changed"] and r["fp1"]["stored_id"]
    assert not r["fp2"]["changed"] and r["fp2"]["stored_id"] == r["fp1"]["stored_id"]
    assert pg_server.execute(prod_db, "SELECT count(*) FROM pgsafe.fingerprint WHERE run_id = 'r1'")[0][0] == 1
    assert r["cmp_same"]["ok"] and r["cmp_same"]["losses"] == []
    assert r["cmp_lost"]["failed"] and not r["cmp_lost"]["ok"]
    assert [(x["table"], x["kind"], x["rows"]) for x in r["cmp_lost"]["losses"]] == [
        ("public.bazaar-vid_metric", "rows_missing", 1)]
    status = {t["table"]: t["status"] for t in r["cmp_lost"]["tables"]}
    assert status["public.bazaar-vid_agent_message"] == "explained_unverified"
    assert "bazaar-vid_metric" in r["cmp_lost"]["msg"]
