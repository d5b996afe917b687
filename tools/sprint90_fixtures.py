#!/usr/bin/env python3
"""Sprint 90 fixtures: the prod-like and dev-like databases of ``shared/spec/sprint90-drift.md``.

    python tools/sprint90_fixtures.py ddl prod|dev|reference     # print the DDL
    python tools/sprint90_fixtures.py seed prod|dev --dsn DSN [--scale N]

``reference`` is what the application code expects (``files/reference/bazaar_vid.sql`` is this
output, checked by a test).  ``prod`` and ``dev`` carry exactly the drift of the spec.

Row counts at scale 1 are the documented ones (134 exports of which 2 orphaned, 379 analytics
rows of which 6 point at those orphans, legacy tables with 621/389/3 rows, ...); a scale factor
multiplies them.  Generation is set-based (``INSERT ... SELECT FROM generate_series``) with
deterministic UUIDs (``md5(tag || n)::uuid``), so two seeds at the same scale are identical and
scale 1,000 takes seconds, not hours.
"""
from __future__ import annotations

import argparse
import sys

# --------------------------------------------------------------------------- DDL pieces
USER = '''CREATE TABLE "bazaar-vid_user" (
    id varchar(255) NOT NULL,
    name varchar(255),
    email varchar(255) NOT NULL,
    "emailVerified" timestamptz,
    image text,
    "isAdmin" boolean NOT NULL DEFAULT false,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "updatedAt" timestamptz,
    CONSTRAINT "bazaar-vid_user_pkey" PRIMARY KEY (id)
);'''

ACCOUNT = '''CREATE TABLE "bazaar-vid_account" (
    "userId" varchar(255) NOT NULL,
    type varchar(255) NOT NULL,
    provider varchar(255) NOT NULL,
    "providerAccountId" varchar(255) NOT NULL,
    refresh_token text,
    access_token text,
    expires_at integer,
    token_type varchar(255),
    scope varchar(255),
    id_token text,
    session_state varchar(255),
    CONSTRAINT "bazaar-vid_account_provider_providerAccountId_pk" PRIMARY KEY (provider, "providerAccountId"),
    CONSTRAINT "bazaar-vid_account_userId_bazaar-vid_user_id_fk"
        FOREIGN KEY ("userId") REFERENCES "bazaar-vid_user" (id)
);
CREATE INDEX account_user_id_idx ON "bazaar-vid_account" ("userId");'''

PROJECT = '''CREATE TABLE "bazaar-vid_project" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "userId" varchar(255) NOT NULL,
    title varchar(255) NOT NULL,
    props jsonb NOT NULL,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "updatedAt" timestamptz,
    "isWelcome" boolean NOT NULL DEFAULT true,
    CONSTRAINT "bazaar-vid_project_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_project_userId_bazaar-vid_user_id_fk"
        FOREIGN KEY ("userId") REFERENCES "bazaar-vid_user" (id),
    CONSTRAINT "project_unique_name" UNIQUE ("userId", title)
);
CREATE INDEX project_user_idx ON "bazaar-vid_project" ("userId");'''

SCENE = '''CREATE TABLE "bazaar-vid_scene" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "projectId" uuid NOT NULL,
    "order" integer NOT NULL DEFAULT 0,
    name varchar(255) NOT NULL DEFAULT 'Scene',
    "tsxCode" text NOT NULL,
    props jsonb,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "updatedAt" timestamptz,
    CONSTRAINT "bazaar-vid_scene_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_scene_projectId_bazaar-vid_project_id_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE
);
CREATE INDEX scene_project_idx ON "bazaar-vid_scene" ("projectId");
CREATE INDEX scene_order_idx ON "bazaar-vid_scene" ("projectId", "order");'''

# Column order differs between prod and dev for the next three tables: the code (and dev)
# has the order below; prod got some columns later through ALTER TABLE ... ADD COLUMN.
MESSAGE_COLUMNS = [
    ('id', 'uuid NOT NULL DEFAULT gen_random_uuid()'),
    ('"projectId"', 'uuid NOT NULL'),
    ('content', 'text NOT NULL'),
    ('role', 'varchar(50) NOT NULL'),
    ('status', "varchar(50) DEFAULT 'success'"),
    ('sequence', 'integer NOT NULL DEFAULT 0'),
    ('"createdAt"', 'timestamptz NOT NULL DEFAULT now()'),
]
MESSAGE_PROD_ORDER = ['id', '"projectId"', 'content', 'role', '"createdAt"', 'status', 'sequence']
MESSAGE_TAIL = '''    CONSTRAINT "bazaar-vid_message_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_message_projectId_bazaar-vid_project_id_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE'''
MESSAGE_AFTER = 'CREATE INDEX message_project_idx ON "bazaar-vid_message" ("projectId");'

JOB_COLUMNS = [
    ('id', 'uuid NOT NULL DEFAULT gen_random_uuid()'),
    ('"projectId"', 'uuid NOT NULL'),
    ('effect', 'text NOT NULL'),
    ('"tsxCode"', 'text'),
    ('status', "varchar(50) NOT NULL DEFAULT 'pending'"),
    ('"errorMessage"', 'text'),
    ('"outputUrl"', 'text'),
    ('"statusMessageId"', 'uuid'),
    ('"createdAt"', 'timestamptz NOT NULL DEFAULT now()'),
    ('"updatedAt"', 'timestamptz'),
]
JOB_PROD_ORDER = ['id', '"projectId"', 'effect', '"tsxCode"', 'status', '"errorMessage"', '"outputUrl"',
                  '"createdAt"', '"updatedAt"', '"statusMessageId"']
JOB_TAIL = '''    CONSTRAINT "bazaar-vid_custom_component_job_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_custom_component_job_projectId_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE,
    CONSTRAINT "bazaar-vid_custom_component_job_statusMessageId_fk"
        FOREIGN KEY ("statusMessageId") REFERENCES "bazaar-vid_message" (id)'''
JOB_AFTER = 'CREATE INDEX custom_component_job_project_idx ON "bazaar-vid_custom_component_job" ("projectId");'

ITERATION_COLUMNS = [
    ('id', 'uuid NOT NULL DEFAULT gen_random_uuid()'),
    ('scene_id', 'uuid NOT NULL'),
    ('project_id', 'uuid NOT NULL'),
    ('message_id', 'uuid'),
    ('operation_type', 'varchar(50) NOT NULL'),
    ('edit_complexity', 'varchar(20)'),
    ('user_prompt', 'text NOT NULL'),
    ('code_before', 'text'),
    ('code_after', 'text'),
    ('user_edited_again', 'boolean DEFAULT false'),
    ('created_at', 'timestamptz NOT NULL DEFAULT now()'),
]
ITERATION_PROD_ORDER = ['id', 'scene_id', 'project_id', 'message_id', 'operation_type', 'edit_complexity',
                        'user_prompt', 'code_before', 'code_after', 'created_at', 'user_edited_again']
ITERATION_TAIL = '''    CONSTRAINT "bazaar-vid_scene_iteration_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_scene_iteration_scene_id_fk"
        FOREIGN KEY (scene_id) REFERENCES "bazaar-vid_scene" (id) ON DELETE CASCADE,
    CONSTRAINT "bazaar-vid_scene_iteration_project_id_fk"
        FOREIGN KEY (project_id) REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE,
    CONSTRAINT "bazaar-vid_scene_iteration_message_id_fk"
        FOREIGN KEY (message_id) REFERENCES "bazaar-vid_message" (id) ON DELETE SET NULL'''
ITERATION_AFTER = 'CREATE INDEX scene_iteration_scene_idx ON "bazaar-vid_scene_iteration" (scene_id);'

BRIEF = '''CREATE TABLE "bazaar-vid_animation_design_brief" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "projectId" uuid NOT NULL,
    "sceneId" uuid NOT NULL,
    "componentJobId" uuid,
    "designBrief" jsonb NOT NULL,
    "llmModel" varchar(100) NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'pending',
    "originalTsxCode" text,
    "lastFixAttempt" timestamptz,
    "fixIssues" text,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "updatedAt" timestamptz,
    CONSTRAINT "bazaar-vid_animation_design_brief_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_animation_design_brief_projectId_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE,
    CONSTRAINT "bazaar-vid_animation_design_brief_componentJobId_fk"
        FOREIGN KEY ("componentJobId") REFERENCES "bazaar-vid_custom_component_job" (id)
);
CREATE INDEX animation_design_brief_project_idx ON "bazaar-vid_animation_design_brief" ("projectId");'''

BRIEF_DEV_COMMENTS = '''COMMENT ON COLUMN "bazaar-vid_animation_design_brief"."originalTsxCode" IS 'TSX before autofix';
COMMENT ON COLUMN "bazaar-vid_animation_design_brief"."lastFixAttempt" IS 'When the fixer last ran';
COMMENT ON COLUMN "bazaar-vid_animation_design_brief"."fixIssues" IS 'Issues the fixer reported';'''


def exports_ddl(ids: str) -> str:
    """The exports pair; ``ids`` is ``code`` (uuid + FKs) or ``text`` (prod's drift)."""
    if ids == "code":
        id_col, user_col, project_col = ("uuid NOT NULL DEFAULT gen_random_uuid()", "varchar(255) NOT NULL",
                                         "uuid NOT NULL")
        fks = '''
    ,CONSTRAINT "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk"
        FOREIGN KEY (user_id) REFERENCES "bazaar-vid_user" (id) ON DELETE CASCADE
    ,CONSTRAINT "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk"
        FOREIGN KEY (project_id) REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE'''
    else:
        id_col, user_col, project_col, fks = "text NOT NULL", "text NOT NULL", "text NOT NULL", ""
    return f'''CREATE TABLE "bazaar-vid_exports" (
    id {id_col},
    user_id {user_col},
    project_id {project_col},
    render_id text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    progress integer DEFAULT 0,
    format text NOT NULL DEFAULT 'mp4',
    quality text NOT NULL DEFAULT 'high',
    output_url text,
    file_size integer,
    duration integer,
    error text,
    metadata jsonb,
    download_count integer DEFAULT 0,
    last_downloaded_at timestamp,
    created_at timestamp NOT NULL DEFAULT now(),
    completed_at timestamp,
    CONSTRAINT "bazaar-vid_exports_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_exports_render_id_unique" UNIQUE (render_id){fks}
);
CREATE INDEX exports_user_idx ON "bazaar-vid_exports" (user_id);
CREATE INDEX exports_project_idx ON "bazaar-vid_exports" (project_id);
CREATE INDEX exports_render_idx ON "bazaar-vid_exports" (render_id);
CREATE INDEX exports_created_idx ON "bazaar-vid_exports" (created_at);'''


def analytics_ddl(export_id: str) -> str:
    if export_id == "code":
        col, fk = "uuid NOT NULL", '''
    ,CONSTRAINT "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"
        FOREIGN KEY (export_id) REFERENCES "bazaar-vid_exports" (id) ON DELETE CASCADE'''
    else:
        col, fk = "text NOT NULL", ""
    return f'''CREATE TABLE "bazaar-vid_export_analytics" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    export_id {col},
    event text NOT NULL,
    event_data jsonb,
    user_agent text,
    ip_address text,
    created_at timestamp NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_export_analytics_pkey" PRIMARY KEY (id){fk}
);
CREATE INDEX analytics_export_idx ON "bazaar-vid_export_analytics" (export_id);
CREATE INDEX analytics_event_idx ON "bazaar-vid_export_analytics" (event);
CREATE INDEX analytics_created_idx ON "bazaar-vid_export_analytics" (created_at);'''


PREFIXED_METRIC = '''CREATE TABLE "bazaar-vid_api_usage_metric" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    provider varchar(50) NOT NULL,
    model varchar(100) NOT NULL,
    user_id varchar(255),
    project_id uuid,
    tool_name varchar(100),
    success boolean NOT NULL,
    response_time integer NOT NULL,
    input_tokens integer,
    output_tokens integer,
    token_count integer,
    error_type varchar(100),
    error_message text,
    metadata jsonb,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_api_usage_metric_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_api_usage_metric_user_id_fk"
        FOREIGN KEY (user_id) REFERENCES "bazaar-vid_user" (id),
    CONSTRAINT "bazaar-vid_api_usage_metric_project_id_fk"
        FOREIGN KEY (project_id) REFERENCES "bazaar-vid_project" (id)
);
CREATE INDEX api_metrics_timestamp_idx ON "bazaar-vid_api_usage_metric" ("timestamp");
CREATE INDEX api_metrics_provider_idx ON "bazaar-vid_api_usage_metric" (provider);
CREATE INDEX api_metrics_user_idx ON "bazaar-vid_api_usage_metric" (user_id);
CREATE INDEX api_metrics_success_idx ON "bazaar-vid_api_usage_metric" (success);
CREATE INDEX api_metrics_provider_time_success_idx
    ON "bazaar-vid_api_usage_metric" (provider, "timestamp", success);'''

OLD_METRIC = '''CREATE TABLE api_usage_metric (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    provider varchar(50) NOT NULL,
    model varchar(100) NOT NULL,
    "userId" varchar(255),
    "projectId" uuid,
    "toolName" varchar(100),
    success boolean NOT NULL,
    "responseTime" integer NOT NULL,
    "tokenCount" integer,
    "errorType" varchar(100),
    "errorMessage" text,
    metadata jsonb,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT api_usage_metric_pkey PRIMARY KEY (id)
);'''

EMPTY_TABLES = '''CREATE TABLE "bazaar-vid_component_error" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "jobId" uuid NOT NULL,
    "errorType" varchar(100) NOT NULL,
    details text,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_component_error_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_component_error_jobId_fk"
        FOREIGN KEY ("jobId") REFERENCES "bazaar-vid_custom_component_job" (id) ON DELETE CASCADE
);
CREATE TABLE "bazaar-vid_patch" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "projectId" uuid NOT NULL,
    patch jsonb NOT NULL,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_patch_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_patch_projectId_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE
);
CREATE TABLE "bazaar-vid_scene_plan" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "projectId" uuid NOT NULL,
    "messageId" uuid,
    "rawReasoning" text NOT NULL,
    "planData" jsonb NOT NULL,
    "userPrompt" text NOT NULL,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_scene_plan_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_scene_plan_projectId_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE,
    CONSTRAINT "bazaar-vid_scene_plan_messageId_fk"
        FOREIGN KEY ("messageId") REFERENCES "bazaar-vid_message" (id)
);
CREATE TABLE "bazaar-vid_scene_specs" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "projectId" uuid NOT NULL,
    "sceneId" uuid,
    name varchar(255) NOT NULL,
    spec jsonb NOT NULL,
    version integer NOT NULL DEFAULT 1,
    "createdBy" varchar(255) NOT NULL,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_scene_specs_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_scene_specs_projectId_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE,
    CONSTRAINT "bazaar-vid_scene_specs_createdBy_fk"
        FOREIGN KEY ("createdBy") REFERENCES "bazaar-vid_user" (id)
);
CREATE INDEX scene_specs_spec_gin_idx ON "bazaar-vid_scene_specs" USING gin (spec);'''

EMPTY_TABLE_NAMES = ["bazaar-vid_component_error", "bazaar-vid_patch", "bazaar-vid_scene_plan",
                     "bazaar-vid_scene_specs"]
LEGACY_TABLE_NAMES = ["bazaar-vid_project_memory", "bazaar-vid_metric", "bazaar-vid_agent_message"]
AUTH_SCHEMAS = ["auth", "pgrst", "neon_auth"]

LEGACY_TABLES = '''CREATE TABLE "bazaar-vid_project_memory" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    "projectId" uuid NOT NULL,
    "memoryType" varchar(50) NOT NULL,
    "memoryKey" varchar(255) NOT NULL,
    "memoryValue" text NOT NULL,
    confidence real DEFAULT 0.8,
    "sourcePrompt" text,
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "updatedAt" timestamptz,
    CONSTRAINT "bazaar-vid_project_memory_pkey" PRIMARY KEY (id),
    CONSTRAINT "bazaar-vid_project_memory_projectId_fk"
        FOREIGN KEY ("projectId") REFERENCES "bazaar-vid_project" (id) ON DELETE CASCADE
);
CREATE INDEX project_memory_project_idx ON "bazaar-vid_project_memory" ("projectId");
CREATE TABLE "bazaar-vid_metric" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    name varchar(255) NOT NULL,
    value double precision NOT NULL,
    tags jsonb,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT "bazaar-vid_metric_pkey" PRIMARY KEY (id)
);
CREATE TABLE "bazaar-vid_agent_message" (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    sender varchar(100) NOT NULL,
    type varchar(100) NOT NULL,
    payload jsonb NOT NULL,
    "correlationId" uuid,
    status varchar(50) NOT NULL DEFAULT 'pending',
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    "processedAt" timestamptz,
    CONSTRAINT "bazaar-vid_agent_message_pkey" PRIMARY KEY (id)
);'''

SHOW_DB_TREE = '''CREATE FUNCTION public.show_db_tree()
RETURNS TABLE (table_name text, column_name text, data_type text)
LANGUAGE sql STABLE AS $$
    SELECT c.table_name::text, c.column_name::text, c.data_type::text
      FROM information_schema.columns c
     WHERE c.table_schema = 'public'
     ORDER BY c.table_name, c.ordinal_position
$$;'''

AUTH_SCHEMAS_DDL = '''CREATE SCHEMA auth;
CREATE FUNCTION auth.session() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
CREATE FUNCTION auth.user_id() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(auth.session() ->> 'sub', '')
$$;
CREATE SCHEMA pgrst;
CREATE FUNCTION pgrst.pre_config() RETURNS void LANGUAGE sql AS $$
    SELECT set_config('pgrst.db_schemas', 'public', true);
$$;
CREATE SCHEMA neon_auth;
CREATE TABLE neon_auth.users_sync (
    raw_json jsonb NOT NULL,
    id text NOT NULL,
    name text,
    email text,
    created_at timestamptz,
    updated_at timestamptz,
    deleted_at timestamptz,
    CONSTRAINT users_sync_pkey PRIMARY KEY (id)
);
CREATE INDEX users_sync_deleted_at_idx ON neon_auth.users_sync (deleted_at);'''


def _table(name: str, columns: list[tuple[str, str]], order: list[str], tail: str, after: str) -> str:
    by_name = dict(columns)
    body = ",\n".join(f"    {col} {by_name[col]}" for col in order)
    return f'CREATE TABLE "{name}" (\n{body},\n{tail}\n);\n{after}'


def _core(column_order: str) -> list[str]:
    prod = column_order == "prod"
    return [
        USER, ACCOUNT, PROJECT, SCENE,
        _table("bazaar-vid_message", MESSAGE_COLUMNS,
               MESSAGE_PROD_ORDER if prod else [c for c, _ in MESSAGE_COLUMNS], MESSAGE_TAIL, MESSAGE_AFTER),
        _table("bazaar-vid_custom_component_job", JOB_COLUMNS,
               JOB_PROD_ORDER if prod else [c for c, _ in JOB_COLUMNS], JOB_TAIL, JOB_AFTER),
        _table("bazaar-vid_scene_iteration", ITERATION_COLUMNS,
               ITERATION_PROD_ORDER if prod else [c for c, _ in ITERATION_COLUMNS], ITERATION_TAIL,
               ITERATION_AFTER),
        BRIEF,
    ]


def ddl(variant: str) -> str:
    """The schema of ``reference`` (the code), ``prod`` or ``dev``."""
    if variant == "reference":
        parts = _core("code") + [exports_ddl("code"), analytics_ddl("code"), PREFIXED_METRIC]
        header = ("-- What the bazaar-vid application code expects (Drizzle schema, table prefix bazaar-vid_).\n"
                  "-- Generated by tools/sprint90_fixtures.py ddl reference; tests keep the two in step.\n")
        return header + "\n\n".join(parts) + "\n"
    if variant == "prod":
        parts = _core("prod") + [exports_ddl("text"), analytics_ddl("text"), PREFIXED_METRIC, OLD_METRIC,
                                 EMPTY_TABLES, LEGACY_TABLES, SHOW_DB_TREE]
    elif variant == "dev":
        parts = _core("code") + [BRIEF_DEV_COMMENTS, exports_ddl("code"), analytics_ddl("text"), OLD_METRIC,
                                 EMPTY_TABLES, AUTH_SCHEMAS_DDL]
    else:
        raise ValueError(f"unknown variant {variant!r}: use reference, prod or dev")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- data
# Documented counts (scale 1).  Keys are the logical names used below.
COUNTS = {
    "prod": {
        "users": 40, "projects": 80, "scenes": 240, "messages": 600, "jobs": 60, "iterations": 300,
        "briefs": 60, "exports_ok": 132, "exports_orphan": 2, "analytics_ok": 373, "analytics_orphan": 6,
        "prefixed_metric": 500, "old_metric": 0, "project_memory": 621, "metric": 389, "agent_message": 3,
    },
    "dev": {
        "users": 12, "projects": 20, "scenes": 60, "messages": 150, "jobs": 15, "iterations": 75,
        "briefs": 15, "exports_ok": 40, "exports_orphan": 0, "analytics_ok": 110, "analytics_orphan": 0,
        "prefixed_metric": 0, "old_metric": 250, "project_memory": 0, "metric": 0, "agent_message": 0,
        "users_sync": 5,
    },
}

BASE_TIME = "timestamptz '2025-03-01 09:00:00+00'"


def counts(variant: str, scale: float = 1.0) -> dict[str, int]:
    """Row counts per logical set at a scale (zero stays zero, anything else at least 1)."""
    return {key: (0 if n == 0 else max(1, round(n * scale))) for key, n in COUNTS[variant].items()}


def expected_table_rows(variant: str, scale: float = 1.0) -> dict[str, int]:
    """Rows per table a seed at ``scale`` holds: what the drift test checks."""
    c = counts(variant, scale)
    rows = {
        "bazaar-vid_user": c["users"], "bazaar-vid_account": c["users"], "bazaar-vid_project": c["projects"],
        "bazaar-vid_scene": c["scenes"], "bazaar-vid_message": c["messages"],
        "bazaar-vid_custom_component_job": c["jobs"], "bazaar-vid_scene_iteration": c["iterations"],
        "bazaar-vid_animation_design_brief": c["briefs"],
        "bazaar-vid_exports": c["exports_ok"] + c["exports_orphan"],
        "bazaar-vid_export_analytics": c["analytics_ok"] + c["analytics_orphan"],
        "api_usage_metric": c["old_metric"],
    }
    rows.update({name: 0 for name in EMPTY_TABLE_NAMES})
    if variant == "prod":
        rows.update({"bazaar-vid_api_usage_metric": c["prefixed_metric"],
                     "bazaar-vid_project_memory": c["project_memory"], "bazaar-vid_metric": c["metric"],
                     "bazaar-vid_agent_message": c["agent_message"]})
    else:
        rows["neon_auth.users_sync"] = c["users_sync"]
    return rows


def _uuid(tag: str, expr: str = "i") -> str:
    return f"md5('{tag}-' || ({expr})::text)::uuid"


def data_sql(variant: str, scale: float = 1.0) -> list[str]:
    """Set-based INSERTs filling a freshly created ``variant`` schema."""
    c = counts(variant, scale)
    text_ids = variant == "prod"
    user_of_project = "(((p - 1) % {users}) + 1)".format(**c)
    stmts = [
        f'''INSERT INTO "bazaar-vid_user" (id, name, email, "emailVerified", image, "isAdmin", "createdAt", "updatedAt")
            SELECT {_uuid('user')}::text, 'User ' || i, 'user' || i || '@example.com',
                   CASE WHEN i % 3 = 0 THEN NULL ELSE {BASE_TIME} + i * interval '1 hour' END,
                   'https://cdn.example.com/avatars/' || i || '.png', i = 1,
                   {BASE_TIME} + i * interval '1 hour', NULL
              FROM generate_series(1, {c['users']}) i''',
        f'''INSERT INTO "bazaar-vid_account" ("userId", type, provider, "providerAccountId", access_token,
                                              expires_at, token_type, scope)
            SELECT {_uuid('user')}::text, 'oauth', CASE WHEN i % 2 = 0 THEN 'github' ELSE 'google' END,
                   (100000 + i)::text, 'gho_' || md5('token-' || i), 1767225600 + i, 'bearer', 'read:user'
              FROM generate_series(1, {c['users']}) i''',
        f'''INSERT INTO "bazaar-vid_project" (id, "userId", title, props, "createdAt", "updatedAt", "isWelcome")
            SELECT {_uuid('project', 'p')}, {_uuid('user', user_of_project)}::text, 'Project ' || p,
                   jsonb_build_object('meta', jsonb_build_object('title', 'Project ' || p, 'duration', 150 + p % 90),
                                      'scenes', jsonb_build_array()),
                   {BASE_TIME} + p * interval '2 hours', {BASE_TIME} + p * interval '3 hours', p % 5 = 0
              FROM generate_series(1, {c['projects']}) p''',
        f'''INSERT INTO "bazaar-vid_scene" (id, "projectId", "order", name, "tsxCode", props, "createdAt")
            SELECT {_uuid('scene')}, {_uuid('project', f"((i - 1) % {c['projects']}) + 1")}, i % 7, 'Scene ' || i,
                   'export default function Scene' || i || '() {{ return <AbsoluteFill>' ||
                   (SELECT string_agg(md5(i::text || '-' || k), '') FROM generate_series(1, 24) k) ||
                   '</AbsoluteFill>; }}',
                   jsonb_build_object('durationInFrames', 90 + i % 60, 'fps', 30),
                   {BASE_TIME} + i * interval '17 minutes'
              FROM generate_series(1, {c['scenes']}) i''',
        f'''INSERT INTO "bazaar-vid_message" (id, "projectId", content, role, status, sequence, "createdAt")
            SELECT {_uuid('message')}, {_uuid('project', f"((i - 1) % {c['projects']}) + 1")},
                   'Make scene ' || i || ' ' || md5('content-' || i) || ' brighter and add a title card',
                   CASE WHEN i % 2 = 0 THEN 'assistant' ELSE 'user' END, 'success', i,
                   {BASE_TIME} + i * interval '11 minutes'
              FROM generate_series(1, {c['messages']}) i''',
        f'''INSERT INTO "bazaar-vid_custom_component_job" (id, "projectId", effect, "tsxCode", status, "outputUrl",
                                                          "statusMessageId", "createdAt")
            SELECT {_uuid('job')}, {_uuid('project', f"((i - 1) % {c['projects']}) + 1")},
                   'particle burst ' || i, 'export const Effect' || i || ' = () => null;',
                   CASE WHEN i % 4 = 0 THEN 'failed' ELSE 'complete' END,
                   'https://r2.example.com/components/' || i || '.js',
                   {_uuid('message', f"((i - 1) % {c['messages']}) + 1")}, {BASE_TIME} + i * interval '29 minutes'
              FROM generate_series(1, {c['jobs']}) i''',
        f'''INSERT INTO "bazaar-vid_scene_iteration" (id, scene_id, project_id, message_id, operation_type,
                                                     edit_complexity, user_prompt, code_before, code_after,
                                                     user_edited_again, created_at)
            SELECT {_uuid('iteration')}, {_uuid('scene', f"((i - 1) % {c['scenes']}) + 1")},
                   {_uuid('project', f"((((i - 1) % {c['scenes']}) % {c['projects']})) + 1")},
                   CASE WHEN i % 5 = 0 THEN NULL ELSE {_uuid('message', f"((i - 1) % {c['messages']}) + 1")} END,
                   (ARRAY['create', 'edit', 'delete'])[1 + i % 3], (ARRAY['surgical', 'creative', 'structural'])[1 + i % 3],
                   'iteration prompt ' || i, 'code before ' || md5('b' || i), 'code after ' || md5('a' || i),
                   i % 4 = 0, {BASE_TIME} + i * interval '13 minutes'
              FROM generate_series(1, {c['iterations']}) i''',
        f'''INSERT INTO "bazaar-vid_animation_design_brief" (id, "projectId", "sceneId", "componentJobId",
                                                             "designBrief", "llmModel", status, "createdAt")
            SELECT {_uuid('brief')}, {_uuid('project', f"((i - 1) % {c['projects']}) + 1")},
                   {_uuid('scene', f"((i - 1) % {c['scenes']}) + 1")},
                   {_uuid('job', f"((i - 1) % {c['jobs']}) + 1")},
                   jsonb_build_object('sceneName', 'Scene ' || i, 'colors', jsonb_build_array('#111', '#eee')),
                   'gpt-4o-mini', 'complete', {BASE_TIME} + i * interval '31 minutes'
              FROM generate_series(1, {c['briefs']}) i''',
    ]
    cast = "::text" if text_ids else ""
    exports_total = c["exports_ok"] + c["exports_orphan"]
    project_of_export = f"((i - 1) % {c['projects']}) + 1"
    user_of_export = f"((((i - 1) % {c['projects']}) % {c['users']})) + 1"
    stmts.append(
        f'''INSERT INTO "bazaar-vid_exports" (id, user_id, project_id, render_id, status, progress, format, quality,
                                              output_url, file_size, duration, metadata, download_count,
                                              created_at, completed_at)
            SELECT {_uuid('export')}{cast}, {_uuid('user', user_of_export)}::text,
                   CASE WHEN i > {c['exports_ok']} THEN {_uuid('deleted-project')}
                        ELSE {_uuid('project', project_of_export)} END{cast},
                   'render-' || md5('render-' || i), (ARRAY['pending', 'rendering', 'completed', 'failed'])[1 + i % 4],
                   CASE WHEN i % 4 = 2 THEN 100 ELSE (i * 7) % 100 END,
                   (ARRAY['mp4', 'webm', 'gif'])[1 + i % 3], (ARRAY['high', 'medium', 'low'])[1 + i % 3],
                   'https://r2.example.com/exports/' || i || '.mp4', 1048576 + i * 977, 5 + i % 55,
                   jsonb_build_object('fps', 30, 'width', 1920, 'height', 1080, 'codec', 'h264'), i % 9,
                   ({BASE_TIME} + i * interval '47 minutes')::timestamp,
                   CASE WHEN i % 4 = 2 THEN ({BASE_TIME} + i * interval '47 minutes' + interval '3 minutes')::timestamp END
              FROM generate_series(1, {exports_total}) i''')
    # Analytics: the first analytics_ok rows spread over the non-orphan exports, then three rows per
    # orphaned export (6 at scale 1).
    stmts.append(
        f'''INSERT INTO "bazaar-vid_export_analytics" (id, export_id, event, event_data, user_agent, ip_address, created_at)
            SELECT {_uuid('analytics')},
                   CASE WHEN i > {c['analytics_ok']}
                        THEN {_uuid('export', f"{c['exports_ok']} + 1 + ((i - {c['analytics_ok']} - 1) / 3)")}
                        ELSE {_uuid('export', f"((i - 1) % {c['exports_ok']}) + 1")} END::text,
                   (ARRAY['started', 'progress', 'completed', 'failed', 'downloaded', 'viewed'])[1 + i % 6],
                   jsonb_build_object('progress', (i * 13) % 100, 'step', i % 6),
                   'Mozilla/5.0 (X11; Linux x86_64) Chrome/' || (120 + i % 10) || '.0',
                   '10.' || (i % 250) || '.' || (i % 199) || '.' || (1 + i % 253),
                   ({BASE_TIME} + i * interval '7 minutes')::timestamp
              FROM generate_series(1, {c['analytics_ok'] + c['analytics_orphan']}) i''')
    if c["prefixed_metric"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_api_usage_metric" (id, provider, model, user_id, project_id, tool_name,
                     success, response_time, input_tokens, output_tokens, token_count, error_type, metadata, "timestamp")
            SELECT {_uuid('prefixed-metric')}, (ARRAY['openai', 'anthropic', 'groq'])[1 + i % 3], 'model-' || (i % 4),
                   {_uuid('user', f"((i - 1) % {c['users']}) + 1")}::text,
                   {_uuid('project', f"((i - 1) % {c['projects']}) + 1")}, 'tool_' || (i % 6), i % 10 <> 0,
                   200 + (i * 37) % 4000, 100 + i % 900, 50 + i % 700, 150 + i % 1600,
                   CASE WHEN i % 10 = 0 THEN 'timeout' END, jsonb_build_object('region', 'us-east-1'),
                   {BASE_TIME} + i * interval '5 minutes'
              FROM generate_series(1, {c['prefixed_metric']}) i''')
    if c["old_metric"]:
        stmts.append(f'''INSERT INTO api_usage_metric (id, provider, model, "userId", "projectId", "toolName", success,
                     "responseTime", "tokenCount", "errorType", "errorMessage", metadata, "timestamp")
            SELECT {_uuid('old-metric')}, (ARRAY['openai', 'anthropic'])[1 + i % 2], 'model-' || (i % 3),
                   {_uuid('user', f"((i - 1) % {c['users']}) + 1")}::text,
                   {_uuid('project', f"((i - 1) % {c['projects']}) + 1")}, 'tool_' || (i % 5), i % 8 <> 0,
                   150 + (i * 53) % 3000, 200 + i % 1200, CASE WHEN i % 8 = 0 THEN 'rate_limit' END,
                   CASE WHEN i % 8 = 0 THEN 'Rate limit exceeded' END, jsonb_build_object('attempt', 1 + i % 3),
                   {BASE_TIME} + i * interval '9 minutes'
              FROM generate_series(1, {c['old_metric']}) i''')
    if c["project_memory"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_project_memory" (id, "projectId", "memoryType", "memoryKey",
                     "memoryValue", confidence, "sourcePrompt", "createdAt")
            SELECT {_uuid('memory')}, {_uuid('project', f"((i - 1) % {c['projects']}) + 1")},
                   (ARRAY['user_preference', 'scene_relationship', 'conversation_context'])[1 + i % 3],
                   'key_' || i, 'remembered ' || md5('memory-' || i), 0.5 + (i % 50) / 100.0,
                   'prompt ' || i, {BASE_TIME} + i * interval '23 minutes'
              FROM generate_series(1, {c['project_memory']}) i''')
    if c["metric"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_metric" (id, name, value, tags, "timestamp")
            SELECT {_uuid('metric')}, (ARRAY['render_ms', 'queue_depth', 'cache_hit'])[1 + i % 3], (i * 3.5) % 1000,
                   jsonb_build_object('host', 'worker-' || (i % 4)), {BASE_TIME} + i * interval '41 minutes'
              FROM generate_series(1, {c['metric']}) i''')
    if c["agent_message"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_agent_message" (id, sender, type, payload, status, "createdAt")
            SELECT {_uuid('agent-message')}, 'brain', 'SCENE_PLAN', jsonb_build_object('n', i), 'processed',
                   {BASE_TIME} + i * interval '1 day'
              FROM generate_series(1, {c['agent_message']}) i''')
    if c.get("users_sync"):
        stmts.append(f'''INSERT INTO neon_auth.users_sync (raw_json, id, name, email, created_at)
            SELECT jsonb_build_object('id', 'neon-' || i, 'email', 'user' || i || '@example.com'), 'neon-' || i,
                   'User ' || i, 'user' || i || '@example.com', {BASE_TIME} + i * interval '1 day'
              FROM generate_series(1, {c['users_sync']}) i''')
    return stmts


def seed(conn, variant: str, scale: float = 1.0) -> None:
    """Create the ``variant`` schema and its data in the (empty) database of ``conn``, then ANALYZE."""
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute(ddl(variant))
        for stmt in data_sql(variant, scale):
            cur.execute(stmt)
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sprint 90 fixture schemas and data")
    sub = parser.add_subparsers(dest="command", required=True)
    ddl_parser = sub.add_parser("ddl")
    ddl_parser.add_argument("variant", choices=["reference", "prod", "dev"])
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("variant", choices=["prod", "dev"])
    seed_parser.add_argument("--dsn", required=True, help="libpq DSN of an empty database (no password: use PGPASSFILE)")
    seed_parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.command == "ddl":
        sys.stdout.write(ddl(args.variant))
        return 0
    import psycopg2  # noqa: PLC0415

    conn = psycopg2.connect(args.dsn)
    try:
        seed(conn, args.variant, args.scale)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
