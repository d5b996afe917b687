# -*- coding: utf-8 -*-
"""Byte counts as people read them (``16.0 kB``): the one formatting every message and report uses."""
from __future__ import annotations


def human_bytes(num):
    """``512 B``, ``16.0 kB``, ``1.5 GB`` (powers of 1024; None reads as 0)."""
    value = float(num or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return "{0} B".format(int(value)) if unit == "B" else "{0:.1f} {1}".format(value, unit)
        value /= 1024
    return "{0:.1f} TB".format(value)  # pragma: no cover
