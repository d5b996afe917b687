# -*- coding: utf-8 -*-
"""The two sides of a schema comparison (pgsafe_schema_diff): a live database, a snapshot file, or DDL loaded
into a throwaway database on the scratch server; read at the same time, then compared and rendered.

Every connection is a whole set of connection options (community.postgresql's names): a side's
``<side>_connection`` or the ``scratch`` server when given, the module's own connection otherwise
(``pgsafe_snapshot.scratch_server``).
"""
from __future__ import annotations

import gc
import os

from ansible.module_utils.pgsafe_connection import CONNECTION_OPTION_NAMES, ConnectionFailure, connect
from ansible.module_utils.pgsafe_identifiers import qualified, split_qualified
from ansible.module_utils.pgsafe_schema_diff import diff_snapshots, summarize
from ansible.module_utils.pgsafe_schema_diff_render import flat_items, render_html, render_markdown
from ansible.module_utils.pgsafe_snapshot import (DEFAULT_IGNORE_SCHEMAS, SnapshotSourceError, ddl_snapshot,
                                                  live_snapshot, read_snapshot_file, schema_fingerprint,
                                                  scratch_server)
from ansible.module_utils.pgsafe_snapshot_pair import read_snapshot_pair


def own_connection(params):
    return {name: params.get(name) for name in CONNECTION_OPTION_NAMES}


def side_connection(params, side):
    """A live side's connection: ``<side>_connection`` when given, else the module's own."""
    return params.get(side + "_connection") or own_connection(params)


def option_errors(params):
    """What is missing from the options, before anything is read (None when nothing)."""
    for side in ("left", "right"):
        if params[side + "_source"] in ("snapshot", "ddl") and not params[side + "_path"]:
            return "{0}_source={1} needs {0}_path (the {2} file)".format(
                side, params[side + "_source"], "snapshot" if params[side + "_source"] == "snapshot" else "SQL")
    return None


def load_side(params, side, ignore_schemas, ignore_patterns):
    source, path = params[side + "_source"], params[side + "_path"]
    if source == "live":
        return live_snapshot(side_connection(params, side), ignore_schemas, ignore_patterns)
    if source == "snapshot":
        return read_snapshot_file(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SnapshotSourceError("cannot read the DDL file {0}: {1}".format(path, exc.strerror)) from None
    snap, _ = ddl_snapshot(scratch_server(params, params.get("scratch")), text, ignore_schemas, ignore_patterns,
                           prefix=params["scratch_database_prefix"], label=os.path.basename(path))
    return snap


def _loader(params, side, ignore_schemas):
    def load():
        try:
            return load_side(params, side, ignore_schemas, params["ignore_patterns"])
        except (ConnectionFailure, SnapshotSourceError) as exc:
            raise SnapshotSourceError("{0} side ({1}): {2}".format(side, params[side + "_label"], exc)) from None
        except Exception as exc:  # noqa: BLE001 - any catalog/psycopg2 error, with the side named
            raise SnapshotSourceError("{0} side ({1}): cannot read the schema: {2}".format(
                side, params[side + "_label"], " ".join(str(exc).split()))) from None
    return load


def read_sides(params):
    """``(left, right)`` snapshots, read at the same time (the right one in a child process); raises
    SnapshotSourceError naming the side(s) that could not be read.

    The two snapshots (tens of thousands of acyclic objects) live until this process exits: the cyclic
    collector is kept off while they are built and then told to leave them alone (gc.freeze), during the
    diff and in its final pass at exit (10 ms at 2,000 tables).
    """
    ignore_schemas = tuple(DEFAULT_IGNORE_SCHEMAS) + tuple(params["ignore_schemas"])
    gc.disable()
    loaded = read_snapshot_pair(_loader(params, "left", ignore_schemas), _loader(params, "right", ignore_schemas))
    gc.freeze()
    gc.enable()
    errors = [str(result) for result in loaded if isinstance(result, Exception)]
    if errors:
        raise SnapshotSourceError("; ".join(errors))
    return loaded[0], loaded[1]


def exact_counts(params, live, audit):
    """Exact rows (read-only) of the live tables the statistics call empty (or never analyzed) and of those
    asked for: an estimate never makes a table a retirement candidate."""
    from ansible.module_utils.pgsafe_retire import exact_count
    asked = {qualified(*split_qualified(name)) for name in audit}
    keys = [k for k, t in live["tables"].items()
            if k in asked or not t.get("analyzed", True) or not max(t.get("reltuples") or 0, t.get("live_rows") or 0)]
    conn = connect(side_connection(params, "left"), read_only=True)
    try:
        with conn.cursor() as cur:
            out = {key: exact_count(cur, *split_qualified(key)) for key in keys}
        conn.rollback()
        return out
    finally:
        conn.close()


def comparison(params, left, right):
    """The module's result: the differences, both fingerprints, flat items, Markdown, HTML and the proposal."""
    from ansible.module_utils.pgsafe_proposal import declared_candidates, propose, render_proposal_yaml
    diffs = diff_snapshots(left, right, ignore={"schemas": params["ignore_schemas"],
                                                "patterns": params["ignore_patterns"]})
    result = summarize(diffs)
    left_label, right_label = params["left_label"], params["right_label"]
    if params["propose"]:
        proposal = propose(left, right, diffs)
        if params["left_source"] == "live":
            counts = exact_counts(params, left, params["propose_audit_tables"])
            declared_candidates(proposal, left, right, counts, params["propose_audit_tables"])
        result["proposal"] = proposal
        result["proposal_yaml"] = render_proposal_yaml(proposal, left_label, params["right_path"] or right_label)
    items = flat_items(result["differences"] + result["column_order"], "{0} vs {1}".format(left_label, right_label))
    markdown, html = render_markdown(result, left_label, right_label), render_html(result, left_label, right_label)
    result.update(identical=not diffs, left_label=left_label, right_label=right_label,
                  left_fingerprint=schema_fingerprint(left), right_fingerprint=schema_fingerprint(right),
                  items=items, markdown=markdown, html=html)
    return result
