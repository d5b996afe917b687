#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_report_files: write a run's report files in one step, each atomically."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_report_files
short_description: Write a run's report files (already rendered) into its artifacts directory in one step
description:
  - Writes every file of I(files) into I(directory) (created, mode 0750), each through a temporary file and
    a rename, so a reader never sees half a report; then points the I(latest_link) symlink, next to
    I(directory), at it.
  - One module run instead of one copy/template task per file (a run writes six files per host).
  - The contents are rendered by the caller (C(lookup('ansible.builtin.template', ...))) on the controller.
  - Every file ends with a newline (added when its content lacks one).
  - "In check mode nothing is written (the run_report role writes its reports with C(check_mode=false): a
    check run's plan is its report)."
version_added: "0.1.0"
author: pgsafe maintainers
attributes:
  check_mode:
    support: full
    description: Writes nothing and reports nothing written.
  diff_mode:
    support: none
    description: The files are the run's reports, written whole; their paths are returned in C(written).
options:
  directory:
    description: The run's artifacts directory.
    type: path
    required: true
  files:
    description: File name (no directory part) to its content.
    type: dict
    required: true
  mode:
    description: Mode of the files written.
    type: str
    default: "0640"
  latest_link:
    description: Name of a symlink in the parent of I(directory) pointed at I(directory) (relative); empty for none.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Write the reports
  pgsafe_report_files:
    directory: "{{ run_context_run_dir }}"
    files:
      report.json: "{{ run_report_document | to_nice_json(indent=2) }}\n"
      report.md: "{{ lookup('ansible.builtin.template', pgsafe_templates_dir ~ '/report.md.j2') }}"
    latest_link: latest
  delegate_to: localhost
"""

RETURN = r"""
written:
  description: Paths of the files whose content changed (or that were created).
  returned: always
  type: list
  elements: str
unchanged:
  description: Paths of the files that already held this content.
  returned: always
  type: list
  elements: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def write_atomically(path, data, mode):
    """Write ``data`` (bytes) to ``path`` through a temporary file in the same directory; True if it changed."""
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                os.chmod(path, mode)
                return False
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def point_link(parent, name, target):
    """Make ``parent/name`` a symlink to ``target`` (relative), replacing an older link atomically."""
    link = os.path.join(parent, name)
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    if os.path.exists(link) and not os.path.islink(link):
        raise ValueError("{0} exists and is not a symlink: move it away".format(link))
    tmp = os.path.join(parent, ".tmp-{0}-{1}".format(name, os.getpid()))
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type="path", required=True),
            files=dict(type="dict", required=True),
            mode=dict(type="str", default="0640"),
            latest_link=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    bad = [name for name in p["files"] if not name or os.path.basename(name) != name or name in (".", "..")]
    if bad or (p["latest_link"] and os.path.basename(p["latest_link"]) != p["latest_link"]):
        module.fail_json(msg="file and link names must be plain names without a directory part: {0}".format(
            ", ".join(repr(n) for n in bad + [p["latest_link"]])))
    try:
        mode = int(p["mode"], 8)
    except ValueError:
        module.fail_json(msg="mode must be octal, like 0640: got {0!r}".format(p["mode"]))
    if module.check_mode:
        module.exit_json(changed=False, written=[], unchanged=[])
    written, unchanged = [], []
    try:
        os.makedirs(p["directory"], mode=0o750, exist_ok=True)
        for name in sorted(p["files"]):
            path = os.path.join(p["directory"], name)
            content = p["files"][name]
            text = content if isinstance(content, str) else str(content)
            data = (text if text.endswith("\n") else text + "\n").encode("utf-8")
            (written if write_atomically(path, data, mode) else unchanged).append(path)
        if p["latest_link"]:
            directory = os.path.normpath(p["directory"])
            point_link(os.path.dirname(directory), p["latest_link"], os.path.basename(directory))
    except (OSError, ValueError) as exc:
        module.fail_json(msg="writing the reports into {0} failed: {1}".format(p["directory"], exc),
                         written=written)
    module.exit_json(changed=bool(written), written=written, unchanged=unchanged)


if __name__ == "__main__":
    main()
