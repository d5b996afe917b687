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
  - "Run on the controller (C(delegate_to: localhost), a local connection without become), its action plugin
    (plugins/action/pgsafe_report_files.py, same code: module_utils/pgsafe_report_files.py) writes the files
    in the controller's worker process: no module start-up. Elsewhere the module runs as any module."
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
on_controller:
  description: True when the action plugin wrote the files on the controller itself (no module run).
  returned: when the action plugin did
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_report_files import ARGUMENT_SPEC, argument_problem, write_report_files


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    mode, problem = argument_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    result = write_report_files(module.params, mode, module.check_mode)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
