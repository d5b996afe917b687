# -*- coding: utf-8 -*-
"""Identifier handling: parse, quote and shorten names the way Postgres does.

Our tables carry hyphens and camelCase (``"bazaar-vid_exports"``, ``"userId"``); hostile names
must stay plain names.  SQL executed against a server is built with ``psycopg2.sql.Identifier``;
these helpers serve messages, reports, generated rollback scripts and derived names.
"""
from __future__ import annotations

import hashlib

NAMEDATALEN = 64  # identifiers are truncated to NAMEDATALEN - 1 bytes


class IdentifierError(ValueError):
    """A name given by the user cannot be used; the message says why and what to do."""


def quote_ident(name):
    """Always-quoted identifier, the way ``format('%I')`` would quote a name that needs it."""
    if not isinstance(name, str) or name == "":
        raise IdentifierError("an identifier must be a non-empty string, got {0!r}".format(name))
    if "\x00" in name:
        raise IdentifierError("identifier {0!r} contains a NUL byte".format(name))
    return '"' + name.replace('"', '""') + '"'


def qualified(schema, name):
    """``"schema"."name"`` for reports and generated scripts."""
    return quote_ident(schema) + "." + quote_ident(name)


def table_key(schema, table):
    """The one key of a table in fingerprints, manifests and reports: ``schema.table``.

    A part holding a dot or a double quote is double-quoted (embedded quotes doubled), so
    ``split_qualified`` reads every key back to the same (schema, table).
    """
    def part(name):
        if "." in name or '"' in name:
            return quote_ident(name)
        return name
    return part(schema) + "." + part(table)


def canonical_key(key):
    """Any spelling of ``[schema.]table`` (``"public"."t"``, ``public.t``, ``t``) as its ``table_key``."""
    return table_key(*split_qualified(key))


def split_qualified(text, default_schema="public"):
    """Split ``schema.table`` / ``"odd.schema"."odd""table"`` into (schema, table) without guessing.

    Unquoted parts are taken verbatim (no case folding: our users write names as they appear in
    the catalog, e.g. ``bazaar-vid_exports``).  A name with a dot must be quoted.
    """
    if not isinstance(text, str) or not text.strip():
        raise IdentifierError("an object name must be a non-empty string, got {0!r}".format(text))
    parts, i, n = [], 0, len(text)
    while i < n:
        if text[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise IdentifierError("unterminated quoted identifier in {0!r}: close the double quote".format(text))
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        else:
            j = text.find(".", i)
            j = n if j == -1 else j
            if '"' in text[i:j]:
                raise IdentifierError("object name {0!r} has a double quote inside an unquoted part: quote the "
                                      "whole part and double the embedded quote".format(text))
            parts.append(text[i:j])
            i = j
        if i < n:
            if text[i] != ".":
                raise IdentifierError("unexpected character {0!r} in object name {1!r}".format(text[i], text))
            i += 1
            if i == n:
                raise IdentifierError("object name {0!r} ends with a dot".format(text))
    if len(parts) == 1:
        return default_schema, parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise IdentifierError("object name {0!r} must be table or schema.table (quote names containing dots)".format(text))


def derived_name(*parts, suffix=""):
    """A derived object name (index, constraint, quarantine table) that fits in 63 bytes.

    Names that would be truncated by the server (and could then collide) are shortened
    deterministically with a hash of the full name, so two different long names never
    truncate to the same identifier.
    """
    full = "_".join(p for p in parts if p) + (("_" + suffix) if suffix else "")
    limit = NAMEDATALEN - 1
    if len(full.encode("utf-8")) <= limit:
        return full
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:10]
    tail = "_" + digest + (("_" + suffix) if suffix else "")
    head = full.encode("utf-8")[: limit - len(tail.encode("utf-8"))].decode("utf-8", "ignore")
    return head + tail
