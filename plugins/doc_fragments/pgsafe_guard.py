# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guard options of every module that changes or removes data (module_utils/pgsafe_backup.GUARD_ARGUMENT_SPEC)."""


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """Documentation of module_utils/pgsafe_backup.GUARD_ARGUMENT_SPEC."""

    DOCUMENTATION = r"""
options:
  backup_id:
    description:
      - The verified, restore-tested backup that covers what the module is about to change (the backup role's
        guard names it). The module checks the record itself, in the target's C(pgsafe.backup), before the first
        change, and refuses when it does not cover every object, is not verified or restore-tested, or is older
        than I(backup_max_age_minutes). Recorded in the journal with the change.
      - A real run that would change something refuses without it, unless I(guard_override) gives a reason.
    type: str
  backup_max_age_minutes:
    description: Oldest acceptable age of I(backup_id).
    type: int
    default: 1440
  guard_override:
    description:
      - The reason of the named override C(pgsafe_overrides.backup_guard) (carried in the run's plan and heading
        its report); recorded in the journal instead of a backup.
    type: str
"""
