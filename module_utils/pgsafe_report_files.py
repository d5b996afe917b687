# -*- coding: utf-8 -*-
"""A run's report files, already rendered, written into its artifacts directory: each atomically, then the
``latest`` symlink pointed at the directory.

One implementation for the module pgsafe_report_files and its action plugin (plugins/action/), which writes
on the controller itself when the task runs there (delegate_to: localhost): no module start-up for files that
were rendered on the controller anyway. Plain Python.
"""
from __future__ import annotations

import os
import tempfile

ARGUMENT_SPEC = dict(
    directory=dict(type="path", required=True),
    files=dict(type="dict", required=True),
    mode=dict(type="str", default="0640"),
    latest_link=dict(type="str", default=""),
)


def argument_problem(params):
    """(file mode as an int, None) or (None, why the arguments are refused)."""
    bad = [name for name in params["files"] if not name or os.path.basename(name) != name or name in (".", "..")]
    link = params["latest_link"]
    if bad or (link and os.path.basename(link) != link):
        return None, "file and link names must be plain names without a directory part: {0}".format(
            ", ".join(repr(n) for n in bad + [link]))
    try:
        return int(params["mode"], 8), None
    except ValueError:
        return None, "mode must be octal, like 0640: got {0!r}".format(params["mode"])


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


def write_report_files(params, mode, check_mode=False):
    """The result of writing ``params`` (the module's arguments): {changed, written, unchanged}, with ``failed``
    and ``msg`` when a write failed (``written``: what was written before)."""
    if check_mode:
        return dict(changed=False, written=[], unchanged=[])
    written, unchanged = [], []
    try:
        os.makedirs(params["directory"], mode=0o750, exist_ok=True)
        for name in sorted(params["files"]):
            path = os.path.join(params["directory"], name)
            content = params["files"][name]
            text = content if isinstance(content, str) else str(content)
            data = (text if text.endswith("\n") else text + "\n").encode("utf-8")
            (written if write_atomically(path, data, mode) else unchanged).append(path)
        if params["latest_link"]:
            directory = os.path.normpath(params["directory"])
            point_link(os.path.dirname(directory), params["latest_link"], os.path.basename(directory))
    except (OSError, ValueError) as exc:
        return dict(failed=True, changed=bool(written), written=written,
                    msg="writing the reports into {0} failed: {1}".format(params["directory"], exc))
    return dict(changed=bool(written), written=written, unchanged=unchanged)
