#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_preflight: can we reach the target, and as whom."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_preflight
short_description: Check that a target database is reachable and describe the session
description:
  - Connects over libpq in a READ ONLY transaction and reports the server version, the login's
    privileges, the database size and whether the product schema is installed.
  - Never changes anything; runs the same in check mode.
  - Fails with a message naming the target (never the password) when the database cannot be reached.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
options:
  min_server_version:
    description: Lowest server major version accepted.
    type: int
    default: 13
"""

EXAMPLES = r"""
- name: Check connectivity to the target database
  pgsafe_preflight:
    login_host: "{{ pg_host }}"
    login_port: "{{ pg_port }}"
    login_user: "{{ pg_user }}"
    login_password: "{{ pg_password }}"
    login_db: "{{ pg_database }}"
"""

RETURN = r"""
server_version:
  description: Server version string.
  returned: success
  type: str
  sample: "15.18"
server_version_num:
  description: Server version number.
  returned: success
  type: int
  sample: 150018
current_user:
  description: The role the session runs as.
  returned: success
  type: str
is_superuser:
  description: Whether that role is a superuser.
  returned: success
  type: bool
database_size_bytes:
  description: Size of the target database.
  returned: success
  type: int
meta_schema_installed:
  description: Whether the product schema (pgsafe) exists at the current version.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_meta import meta_schema_installed


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(min_server_version=dict(type="int", default=13)),
        supports_check_mode=True,
    )
    try:
        conn = connect(module.params, read_only=True)
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                        "current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                        "pg_database_size(current_database())")
            version, version_num, user, superuser, size = cur.fetchone()
            installed = meta_schema_installed(cur)
        conn.rollback()
    finally:
        conn.close()
    if version_num // 10000 < module.params["min_server_version"]:
        module.fail_json(msg="server {0} is older than the supported minimum {1}: upgrade the server or "
                             "lower min_server_version".format(version, module.params["min_server_version"]))
    module.exit_json(changed=False, server_version=version, server_version_num=version_num, current_user=user,
                     is_superuser=bool(superuser), database_size_bytes=size, meta_schema_installed=installed)


if __name__ == "__main__":
    main()
