# -*- coding: utf-8 -*-
"""A schema comparison for people: flat rows, Markdown and HTML.  Plain Python; no Ansible import."""
from __future__ import annotations

from ansible.module_utils.pgsafe_schema_diff import KIND_ORDER


def flat_items(differences, comparison=None):
    """Flat dicts (one per difference) for report sections' ``items``."""
    items = []
    for d in differences:
        hz = d["hazard"]
        items.append({"comparison": comparison, "severity": d["severity"], "kind": d["kind"], "object": d["object"],
                      "attribute": d["attribute"], "left": _cell(d["left"]), "right": _cell(d["right"]),
                      "rewrite": hz["rewrite"], "lock": hz["lock"] or "", "data_loss": hz["data_loss"],
                      "cast_may_fail": hz["cast_may_fail"], "note": hz["note"]})
        if comparison is None:
            del items[-1]["comparison"]
    return items


def _cell(value):
    if value is None:
        return "(absent)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_markdown(result, left_label="left", right_label="right"):
    """Markdown for people: counts, then one table per object kind, then column order explained."""
    lines = ["### {0} vs {1}".format(left_label, right_label), "",
             "{0} differences: {1} blocking, {2} warning, {3} info; {4} tables with another column order.".format(
                 result["total"], result["counts"]["blocking"], result["counts"]["warning"], result["counts"]["info"],
                 len(result["column_order"])), ""]
    by_kind = {}
    for d in result["differences"]:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in sorted(by_kind, key=lambda k: KIND_ORDER.get(k, 99)):
        lines += ["#### {0}".format(kind), "",
                  "| severity | object | attribute | {0} | {1} | hazard |".format(left_label, right_label),
                  "|---|---|---|---|---|---|"]
        for d in by_kind[kind]:
            lines.append("| {0} | `{1}` | {2} | {3} | {4} | {5} |".format(
                d["severity"], d["object"].replace("|", "\\|"), d["attribute"], _md(d["left"]), _md(d["right"]),
                _md(_hazard_text(d["hazard"]))))
        lines.append("")
    if result["column_order"]:
        lines += ["#### column order (informational)", ""]
        for d in result["column_order"]:
            lines += ["- `{0}`: {1}: {2} vs {3}. {4}".format(d["object"], d["summary"], _md(d["left"]),
                                                            _md(d["right"]), d["hazard"]["note"])]
        lines.append("")
    return "\n".join(lines)


def _md(value):
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def _hazard_text(hz):
    flags = [name for name in ("rewrite", "scan", "data_loss", "cast_may_fail") if hz.get(name)]
    head = ", ".join(flags + ([hz["lock"]] if hz.get("lock") else [])) or "none"
    return "{0}: {1}".format(head, hz.get("note") or "")


def _escape(text):
    """html.escape (quote=True) without importing html (and its 2,000 entities) for one function."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("'", "&#x27;"))


def render_html(result, left_label="left", right_label="right"):
    """A side-by-side HTML table per object kind (a fragment, embedded in report.html)."""
    esc = _escape
    parts = ["<h3>{0} vs {1}</h3>".format(esc(left_label), esc(right_label)),
             "<p>{0} differences: <b>{1} blocking</b>, {2} warning, {3} info; {4} tables with another column "
             "order.</p>".format(result["total"], result["counts"]["blocking"], result["counts"]["warning"],
                                 result["counts"]["info"], len(result["column_order"]))]
    by_kind = {}
    for d in result["differences"]:
        by_kind.setdefault(d["kind"], []).append(d)
    colours = {"blocking": "#fdd", "warning": "#ffd", "info": "#eef"}
    for kind in sorted(by_kind, key=lambda k: KIND_ORDER.get(k, 99)):
        parts.append("<h4>{0}</h4><table><tr><th>severity</th><th>object</th><th>attribute</th><th>{1}</th>"
                     "<th>{2}</th><th>hazard</th></tr>".format(esc(kind), esc(left_label), esc(right_label)))
        for d in by_kind[kind]:
            parts.append('<tr style="background:{0}"><td>{1}</td><td><code>{2}</code></td><td>{3}</td>'
                         "<td><code>{4}</code></td><td><code>{5}</code></td><td>{6}</td></tr>".format(
                             colours.get(d["severity"], "#fff"), esc(d["severity"]), esc(d["object"]),
                             esc(d["attribute"]), esc(_cell(d["left"])), esc(_cell(d["right"])),
                             esc(_hazard_text(d["hazard"]))))
        parts.append("</table>")
    if result["column_order"]:
        parts.append("<h4>column order (informational)</h4><table><tr><th>table</th><th>{0}</th><th>{1}</th>"
                     "<th>explanation</th></tr>".format(esc(left_label), esc(right_label)))
        for d in result["column_order"]:
            parts.append("<tr><td><code>{0}</code></td><td>{1}</td><td>{2}</td><td>{3}</td></tr>".format(
                esc(d["object"]), esc(_cell(d["left"])), esc(_cell(d["right"])), esc(d["hazard"]["note"])))
        parts.append("</table>")
    return "\n".join(parts)

