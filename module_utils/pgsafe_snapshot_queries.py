# -*- coding: utf-8 -*-
"""The catalog queries a schema snapshot reads: ONE query per object kind (never one per table).

``QUERIES[kind]`` takes ``%(ignore)s`` (an array of schema names left out); pgsafe_snapshot turns the
rows into the document.  Plain strings; no Ansible import, no database.
"""
from __future__ import annotations

# Filter on a namespace alias ``n``: %(ignore)s is an array of schema names.
_NS_FILTER = ("n.nspname <> ALL(%(ignore)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
              "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'")


def _not_extension_member(alias, catalog):
    # refclassid (always pg_extension for deptype 'e') lets the server read only the extensions' entries
    # through pg_depend's reference index instead of scanning all of pg_depend.
    return ("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.refclassid = 'pg_extension'::regclass "
            "AND e.classid = '{1}'::regclass AND e.objid = {0}.oid AND e.deptype = 'e')".format(alias, catalog))


def _comment(alias, catalog, subid="0"):
    """LEFT JOIN of pg_description for a comment (joins, never one function call per row)."""
    return ("LEFT JOIN pg_description d_{0} ON d_{0}.objoid = {0}.oid AND d_{0}.classoid = '{1}'::regclass "
            "AND d_{0}.objsubid = {2}".format(alias, catalog, subid))


QUERIES = {
    "schemas": """
        SELECT n.nspname, d_n.description
          FROM pg_namespace n {c}
         WHERE {ns} AND {ext}
    """.format(c=_comment("n", "pg_namespace"), ns=_NS_FILTER, ext=_not_extension_member("n", "pg_namespace")),
    "relations": """
        SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.reltuples::float8,
               c.relpages::bigint * current_setting('block_size')::bigint,
               CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_stat_get_live_tuples(c.oid) END,
               CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_stat_get_tuples_inserted(c.oid)
                    + pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid) END,
               c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
               CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
               CASE WHEN c.relispartition THEN
                   (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid) END,
               CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
               d_c.description
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {c}
         WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {ns} AND {ext}
    """.format(c=_comment("c", "pg_class"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    # Columns come bare (no joins: 20,000 rows stay cheap); defaults and comments come apart.
    "columns": """
        SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               NULLIF(a.attidentity::text || a.attgenerated::text, ''),
               CASE WHEN a.attcollation NOT IN (0, 100) THEN a.attcollation END
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {ns}
    """.format(ns=_NS_FILTER),
    # Defaults print with relation 0 (no relation open per row: that is what makes pg_get_expr slow),
    # unless they reference a column
    # (an expression with a column reference: a generated column).
    "defaults": """
        SELECT ad.adrelid, ad.adnum,
               pg_get_expr(ad.adbin, CASE WHEN ad.adbin::text LIKE '%%{VAR %%' THEN ad.adrelid ELSE 0 END)
          FROM pg_attrdef ad
    """,
    "column_comments": """
        SELECT objoid, objsubid, description FROM pg_description
         WHERE classoid = 'pg_class'::regclass AND objsubid > 0
    """,
    "collations": """
        SELECT co.oid, co.collname, n.nspname FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
    """,
    "opclasses": """
        SELECT oc.oid, oc.opcname, n.nspname FROM pg_opclass oc JOIN pg_namespace n ON n.oid = oc.opcnamespace
         WHERE NOT oc.opcdefault
    """,
    # Foreign keys, primary keys and unique constraints are spelled from their parts (pg_get_constraintdef
    # costs a catalog walk per row); checks and exclusions are printed by the server.
    "constraints": """
        SELECT con.conrelid, con.conname, con.contype,
               CASE WHEN con.contype NOT IN ('f', 'p', 'u') THEN pg_get_constraintdef(con.oid) END,
               con.condeferrable, con.condeferred, con.convalidated, array_to_string(con.conkey, ' '), con.confrelid,
               array_to_string(con.confkey, ' '), con.confupdtype, con.confdeltype, con.confmatchtype, con.conindid,
               d_con.description
          FROM pg_constraint con
          JOIN pg_class c ON c.oid = con.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE con.conrelid <> 0 AND con.conparentid = 0 AND con.contype <> 'n' AND {ns}
    """.format(c=_comment("con", "pg_constraint"), ns=_NS_FILTER),
    # Index definitions are assembled from their parts too (pg_get_indexdef looks up the default
    # operator class of every key: slow); only expression keys are printed by the server.
    "indexes": """
        SELECT i.indrelid, ic.relname, am.amname, i.indisunique, i.indisprimary, i.indisvalid AND i.indisready,
               i.indnkeyatts, i.indkey::text, i.indclass::text, i.indcollation::text, i.indoption::text,
               CASE WHEN i.indexprs IS NOT NULL THEN
                    ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
                            FROM generate_series(1, i.indnatts) k)::text[] END,
               pg_get_expr(i.indpred, i.indrelid, true), ic.reloptions, i.indexrelid, d_ic.description
          FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_am am ON am.oid = ic.relam
          {c}
         WHERE c.relkind IN ('r', 'p', 'm', 'f') AND NOT ic.relispartition AND {ns}
    """.format(c=_comment("ic", "pg_class"), ns=_NS_FILTER),
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
               CASE WHEN p.prokind IN ('f', 'w') THEN pg_get_function_result(p.oid) END,
               l.lanname, p.provolatile, p.prosecdef, p.proisstrict, p.proconfig,
               encode(sha256(convert_to(coalesce(p.prosrc, '') || coalesce('/*bin*/' || p.probin, ''), 'UTF8')), 'hex'),
               d_p.description
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_language l ON l.oid = p.prolang
          {c}
         WHERE {ns} AND {ext}
    """.format(c=_comment("p", "pg_proc"), ns=_NS_FILTER, ext=_not_extension_member("p", "pg_proc")),
    "triggers": """
        SELECT n.nspname, c.relname, t.tgname,
               pg_get_triggerdef(t.oid), quote_ident(t.tgname),
               t.tgenabled, d_t.description
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND {ns} AND {ext}
    """.format(c=_comment("t", "pg_trigger"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "sequences": """
        SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
               s.seqmax, s.seqcache, s.seqcycle,
               (SELECT quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) || '.' || quote_ident(ta.attname)
                  FROM pg_depend dep JOIN pg_class tc ON tc.oid = dep.refobjid
                  JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                  JOIN pg_attribute ta ON ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid
                 WHERE dep.classid = 'pg_class'::regclass AND dep.objid = c.oid AND dep.deptype IN ('a', 'i')
                   AND dep.refclassid = 'pg_class'::regclass LIMIT 1),
               EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
                          AND dep.deptype = 'i'),
               d_c.description
          FROM pg_sequence s
          JOIN pg_class c ON c.oid = s.seqrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE {ns} AND {ext}
    """.format(c=_comment("c", "pg_class"), ns=_NS_FILTER, ext=_not_extension_member("c", "pg_class")),
    "extensions": """
        SELECT x.extname, x.extversion, n.nspname, d_x.description
          FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
          {c}
         WHERE x.extname <> 'plpgsql'
    """.format(c=_comment("x", "pg_extension")),
    "enums": """
        SELECT n.nspname, t.typname,
               ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)::text[],
               d_t.description
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          {c}
         WHERE t.typtype = 'e' AND {ns} AND {ext}
    """.format(c=_comment("t", "pg_type"), ns=_NS_FILTER, ext=_not_extension_member("t", "pg_type")),
    "domains": """
        SELECT n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
               CASE WHEN t.typcollation <> bt.typcollation THEN co.collname END,
               ARRAY(SELECT k.conname || ': ' || pg_get_constraintdef(k.oid) FROM pg_constraint k
                      WHERE k.contypid = t.oid ORDER BY k.conname)::text[],
               d_t.description
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          JOIN pg_type bt ON bt.oid = t.typbasetype
          LEFT JOIN pg_collation co ON co.oid = t.typcollation
          {c}
         WHERE t.typtype = 'd' AND {ns} AND {ext}
    """.format(c=_comment("t", "pg_type"), ns=_NS_FILTER, ext=_not_extension_member("t", "pg_type")),
    "policies": """
        SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END
                       FROM unnest(p.polroles) r ORDER BY 1)::text[],
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), d_p.description
          FROM pg_policy p
          JOIN pg_class c ON c.oid = p.polrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          {c}
         WHERE {ns}
    """.format(c=_comment("p", "pg_policy"), ns=_NS_FILTER),
}
