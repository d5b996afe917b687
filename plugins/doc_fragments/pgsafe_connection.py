# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every pgsafe module (community.postgresql's vocabulary)."""


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """Documentation of module_utils/pgsafe_connection.CONNECTION_ARGUMENT_SPEC."""

    DOCUMENTATION = r"""
options:
  login_host:
    description: Host to connect to (same option as community.postgresql).
    type: str
    default: ''
    aliases: [host]
  login_port:
    description: Port to connect to.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description: Role to log in as.
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description: Password of I(login_user). Never logged, never put on a command line.
    type: str
    default: ''
  login_db:
    description: Database to connect to.
    type: str
    default: postgres
    aliases: [db, database]
  login_unix_socket:
    description: Unix socket directory, instead of I(login_host).
    type: str
    default: ''
    aliases: [unix_socket]
  ssl_mode:
    description: libpq sslmode.
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description: Root certificate file (libpq sslrootcert).
    type: str
    aliases: [ssl_rootcert]
  ssl_cert:
    description: Client certificate file.
    type: path
  ssl_key:
    description: Client key file.
    type: path
  connect_params:
    description: Further libpq connection parameters.
    type: dict
    default: {}
  session_role:
    description: Role to switch to with SET ROLE after connecting.
    type: str
requirements:
  - psycopg2 on the host that runs the task
notes:
  - Every result of a module that ran SQL has C(queries), the statements it ran in order
    (community.postgresql's return value; values inlined, long statements shortened, at most 1000 listed).
"""
