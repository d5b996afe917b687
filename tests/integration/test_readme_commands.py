"""The README's commands for real environments work as written, on the shipped inventory templates.

The templates (inventories/prod: prod + staging; inventories/dev: dev) are copied and filled in the way
the README tells a user to (every CHANGE-ME, sslmode, backup directories, prod's window), with the
local test cluster's databases; the password comes from the environment as the README says. Then
every `ansible-playbook` line of the README's "Running against real environments" section runs, in
order, as written (only the inventory path and the `<prod's pg_database>` placeholder are filled).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests import pg

EXPORTS = '"bazaar-vid_exports"'


def readme_commands() -> list[str]:
    text = (pg.ROOT / "README.md").read_text()
    section = text[text.index("## Running against real environments"):]
    section = section[:section.index("\n## ", 3)]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("ansible-playbook ")]


def fill(template: str, target: Path, hosts: dict, backups: Path) -> Path:
    """Copy an inventory template and fill it in as a user would."""
    shutil.copytree(pg.ROOT / "inventories" / template, target, symlinks=True)
    hosts_file = target / "hosts.yml"
    text = hosts_file.read_text()
    for host, (server, database) in hosts.items():
        text = re.sub(rf"(\n        {host}:\n)(.*?)(?=\n        \w+:\n|\Z)", lambda m, s=server, d=database: (
            m.group(1) + f"          pg_host: {s.libpq['host']}\n          pg_port: {s.port}\n"
            f"          pg_database: {d}\n          pg_user: {s.libpq['user']}"), text, flags=re.S)
    assert "CHANGE-ME" not in "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")), text
    hosts_file.write_text(text + "\n")
    group_vars = target / "group_vars" / "all.yml"
    group_vars.write_text(group_vars.read_text().replace("pg_sslmode: require", "pg_sslmode: disable"))
    for backup_file in target.glob("host_vars/*/backup.yml"):
        host = backup_file.parent.name
        backup_file.write_text(re.sub(r"(?m)^  - /.*$", "", backup_file.read_text()).replace(
            "backup_destinations:", f"backup_destinations:\n  - {backups / host / 'primary'}\n"
                                    f"  - {backups / host / 'mirror'}"))
    window = target / "host_vars" / "prod" / "window.yml"
    if window.exists():  # the run happens inside prod's window
        window.write_text('---\npgsafe_maintenance_window: always\n')
    return target


def column_type(server, db, table, column):
    return server.execute(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = %s::regclass AND attname = %s", (table, column))[0][0]


def test_every_readme_command_runs_as_written(pg_server, tmp_path):
    commands = readme_commands()
    assert [c.split()[2:4] for c in commands] == [
        ["inventories/prod", "playbooks/plan.yml"], ["inventories/prod", "playbooks/sprint90_rehearsal.yml"],
        ["inventories/prod", "playbooks/sprint90_prod.yml"],
        ["inventories/dev", "playbooks/sprint90_dev.yml"], ["inventories/prod", "playbooks/rollback.yml"]]
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging, \
            pg_server.sprint90_database("dev") as dev:
        inventories = {
            "inventories/prod": fill("prod", tmp_path / "prod", {"prod": (pg_server, prod),
                                                                 "staging": (pg_server, staging)}, tmp_path / "b"),
            "inventories/dev": fill("dev", tmp_path / "dev", {"dev": (pg_server, dev)}, tmp_path / "b"),
        }
        env = dict(os.environ, PGSAFE_PG_PASSWORD=pg_server.libpq["password"],
                   PGSAFE_ARTIFACTS_ROOT=str(tmp_path / "artifacts"), ANSIBLE_CONFIG=str(pg.ROOT / "ansible.cfg"),
                   PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1")
        for command in commands:
            argv = shlex.split(command.replace("<prod's pg_database>", prod))
            argv[2] = str(inventories[argv[2]])
            result = subprocess.run(argv, cwd=pg.ROOT, env=env, capture_output=True, text=True, timeout=900,
                                    check=False)
            assert result.returncode == 0, (command, (result.stdout + result.stderr)[-4000:])
            if "plan.yml" in command:
                assert column_type(pg_server, prod, EXPORTS, "id") == "text"  # a plan changes nothing
                assert list((tmp_path / "artifacts" / "prod" / "plan" / "latest").glob("plan.md"))
            if "sprint90_prod.yml" in command:
                assert column_type(pg_server, prod, EXPORTS, "id") == "uuid"
                assert column_type(pg_server, staging, EXPORTS, "id") == "uuid"  # rehearsed there first
            if "sprint90_dev.yml" in command:
                assert column_type(pg_server, dev, '"bazaar-vid_export_analytics"', "export_id") == "uuid"
        assert column_type(pg_server, prod, EXPORTS, "id") == "text"  # the rollback undid prod's run
        assert pg_server.execute(prod, 'SELECT count(*) FROM "bazaar-vid_exports"') == [(134,)]
        assert list((tmp_path / "b" / "prod" / "primary").iterdir())  # backups where the inventory says
