# -*- coding: utf-8 -*-
"""One schema difference record (kind, object, attribute, both sides, severity, hazard, summary), and the
differences of the objects that are not tables: extensions, views, functions, triggers, policies,
sequences, enums and domains.  Plain Python; no Ansible import, no database.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_hazards import hazards_of

AE = "ACCESS EXCLUSIVE"
COMMENT_LOCK = "SHARE UPDATE EXCLUSIVE"


def hazard(rewrite=False, lock=None, data_loss=False, cast_may_fail=False, scan=False, note=""):
    """One hazard record (every difference carries one)."""
    flags = {"rewrite": bool(rewrite), "scan": bool(scan), "lock": lock, "data_loss": bool(data_loss),
             "cast_may_fail": bool(cast_may_fail), "note": note}
    flags["types"] = hazards_of(flags)  # the typed names every plan and report uses
    return flags


def difference(kind, obj, attribute, left, right, severity, hz, summary):
    return {"kind": kind, "object": obj, "attribute": attribute, "left": left, "right": right,
            "severity": severity, "hazard": hz, "summary": summary}


def comment_difference(kind, obj, lval, rval):
    if (lval or None) == (rval or None):
        return []
    return [difference(kind, obj, "comment", lval, rval, "info",
                  hazard(lock=COMMENT_LOCK, note="COMMENT ON: catalog-only"),
                  "{0} comment differs".format(kind))]


def attribute_differences(kind, obj, left, right, attributes, classify):
    out = []
    for attr in attributes:
        lval, rval = left.get(attr), right.get(attr)
        if lval != rval:
            severity, hz = classify(attr, lval, rval)
            out.append(difference(kind, obj, attr, lval, rval, severity, hz,
                             "{0} {1}: {2} -> {3}".format(kind, attr, shown(lval), shown(rval))))
    return out


def shown(value):
    if value is None:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(empty)"
    return str(value)


def presence_difference(kind, key, lobj, robj, severity_missing, severity_extra, hz_missing, hz_extra, brief):
    if lobj is None:
        return [difference(kind, key, "presence", None, brief(robj), severity_missing, hz_missing,
                      "{0} missing (in right only)".format(kind))]
    return [difference(kind, key, "presence", brief(lobj), None, severity_extra, hz_extra,
                  "{0} extra (in left only)".format(kind))]


def object_keys(left_items, right_items):
    return sorted(set(left_items) | set(right_items))


# --------------------------------------------------------------------------- per kind
def kind_differences(name, left_items, right_items, create, drop, brief, attributes=(), classify=None, more=None,
                     extra_severity="warning"):
    """One object kind: presence (missing: blocking, with ``create``, a hazard or a callable of the right object;
    extra: ``extra_severity`` with ``drop``), the ``attributes`` judged by ``classify``, the kind's own
    differences (``more(key, left object, right object)``) and the comment."""
    out = []
    for key in object_keys(left_items, right_items):
        lo, ro = left_items.get(key), right_items.get(key)
        if lo is None or ro is None:
            out += presence_difference(name, key, lo, ro, "blocking", extra_severity,
                                       create(ro or {}) if callable(create) else create, drop, brief)
            continue
        if attributes:
            out += attribute_differences(name, key, lo, ro, attributes, classify)
        if more is not None:
            out += more(key, lo, ro)
        out += comment_difference(name, key, lo.get("comment"), ro.get("comment"))
    return out


def extension_diffs(left, right):
    """Extensions: presence, version, schema, comment."""
    return kind_differences(
        "extension", left["extensions"], right["extensions"],
        hazard(note="CREATE EXTENSION (needs the package on the server)"),
        hazard(False, AE, note="DROP EXTENSION fails while objects depend on it"),
        lambda o: "version {0}".format(o["version"]), ("version", "schema"), lambda a, lv, rv: (
            ("info", hazard(note="ALTER EXTENSION ... UPDATE")) if a == "version"
            else ("warning", hazard(False, AE, note="ALTER EXTENSION ... SET SCHEMA moves its objects"))),
        extra_severity="info")


def _view_column_comments(key, lo, ro):
    return [d for col in ro["columns"] if col in lo["columns"]
            for d in comment_difference("column", "{0}.{1}".format(key, '"' + col.replace('"', '""') + '"'),
                                        lo["columns"][col].get("comment"), ro["columns"][col].get("comment"))]


def view_diffs(left, right):
    """Views and materialized views: presence, kind, definition, comments (theirs and their columns')."""
    return kind_differences(
        "view", left["views"], right["views"],
        lambda ro: hazard(note="CREATE VIEW: catalog-only" if ro.get("kind") == "view" else
                          "CREATE MATERIALIZED VIEW runs its query"),
        hazard(False, AE, note="DROP VIEW: no table data lost; dependent views go with CASCADE"),
        lambda o: o["kind"], ("kind", "definition"), lambda a, lv, rv: (
            "warning", hazard(False, AE, note="CREATE OR REPLACE VIEW (same columns) or drop and re-create")),
        more=_view_column_comments)


def function_diffs(left, right):
    """Functions and procedures: presence, signature-level attributes, body, comment."""
    return kind_differences(
        "function", left["functions"], right["functions"], hazard(note="CREATE FUNCTION: catalog-only"),
        hazard(note="DROP FUNCTION: catalog-only; fails while views, defaults or triggers use it"),
        lambda o: "{0} returns {1}".format(o["kind"], o.get("result") or "void"),
        ("kind", "result", "language", "volatility", "security_definer", "strict", "config", "body_sha256"),
        lambda a, lv, rv: ("warning", hazard(note=("return type changes need DROP and CREATE" if a in ("kind", "result")
                                                   else "CREATE OR REPLACE FUNCTION: catalog-only"))))


def trigger_and_policy_diffs(left, right, lviews_tables):
    """Triggers and policies on tables (and views) present on both sides."""
    out = []
    for kind, name, attrs in (("triggers", "trigger", ("definition", "enabled")),
                              ("policies", "policy", ("command", "permissive", "roles", "using", "with_check"))):
        out += kind_differences(
            name, {k: v for k, v in left[kind].items() if v["table"] in lviews_tables},
            {k: v for k, v in right[kind].items() if v["table"] in lviews_tables},
            hazard(False, "SHARE ROW EXCLUSIVE" if name == "trigger" else AE,
                   note="CREATE {0}: catalog-only, brief lock".format(name.upper())),
            hazard(False, AE, note="DROP {0}: catalog-only, brief lock".format(name.upper())),
            lambda o: o.get("definition") or "{0} {1}".format(o.get("command"), shown(o.get("roles"))),
            attrs, lambda a, lv, rv, name=name: (
                "warning", hazard(False, AE, note="drop and re-create the {0}: catalog-only, brief lock".format(name))))
    return out


def _sequence_start(key, lo, ro):
    if lo.get("start") == ro.get("start"):
        return []
    return [difference("sequence", key, "start", lo.get("start"), ro.get("start"), "info", hazard(),
                       "sequence start differs (the current value matters, not the start)")]


def sequence_diffs(left, right):
    """Sequences: presence, attributes, start, comment."""
    return kind_differences(
        "sequence", left["sequences"], right["sequences"], hazard(note="CREATE SEQUENCE"),
        hazard(False, AE, note="DROP SEQUENCE loses its current value; defaults using it fail"),
        lambda o: o["type"], ("type", "increment", "min", "max", "cache", "cycle", "owned_by"),
        lambda a, lv, rv: ("warning", hazard(False, AE, note="ALTER SEQUENCE: catalog-only")), more=_sequence_start)


def _enum_labels(key, lo, ro):
    if lo["labels"] == ro["labels"]:
        return []
    lacking = [lab for lab in ro["labels"] if lab not in lo["labels"]]
    surplus = [lab for lab in lo["labels"] if lab not in ro["labels"]]
    if surplus:
        sev, hz = "warning", hazard(True, AE, cast_may_fail=True, note=(
            "removing enum labels means a new type and ALTER COLUMN ... TYPE on every column using it "
            "(rewrite); rows holding {0} block it").format(shown(surplus)))
    elif lacking:
        sev, hz = "blocking", hazard(note="ALTER TYPE ... ADD VALUE: catalog-only, no rewrite")
    else:
        sev, hz = "info", hazard(note="label order differs: only sort order is affected")
    return [difference("enum", key, "labels", lo["labels"], ro["labels"], sev, hz, "enum labels differ")]


def enum_diffs(left, right):
    """Enums: presence, labels (added, removed, reordered), comment."""
    return kind_differences("enum", left["enums"], right["enums"], hazard(note="CREATE TYPE ... AS ENUM"),
                            hazard(False, AE, note="DROP TYPE fails while columns use it"),
                            lambda o: shown(o["labels"]), more=_enum_labels)


def domain_diffs(left, right):
    """Domains: presence, base type, constraints, comment."""
    return kind_differences(
        "domain", left["domains"], right["domains"], hazard(note="CREATE DOMAIN"),
        hazard(False, AE, note="DROP DOMAIN fails while columns use it"), lambda o: o["base_type"],
        ("base_type", "not_null", "default", "collation", "constraints"),
        lambda a, lv, rv: ("warning", hazard(False, AE, scan=a in ("not_null", "constraints"),
                                             cast_may_fail=a in ("not_null", "constraints", "base_type"),
                                             note="ALTER DOMAIN: new constraints are checked against every column "
                                                  "using the domain")))
