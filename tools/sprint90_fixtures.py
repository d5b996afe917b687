#!/usr/bin/env python3
"""Sprint 90 fixtures: the bazaar-vid app's real prod and dev databases (``shared/spec/sprint90-drift.md``).

    python tools/sprint90_fixtures.py ddl prod|dev|reference     # print the DDL
    python tools/sprint90_fixtures.py seed prod|dev --dsn DSN [--scale N]

``prod`` is the app's production schema as it really was when Sprint 90 ran: the 22 tables of the
drizzle-kit introspection of 2025-06-23 (``shared/app/introspected-prod/0000_abandoned_legion.sql``:
column order, types, defaults, constraint and index names as introspected; its bogus index opclasses
are dropped for the defaults), then the migrations applied after it: 0001 (the exports pair, with
prod's drift: text ids, no FKs from exports or analytics), 0002 (credits), 0003 (user.stripe_customer_id),
0004 (usage limits), 0005 (shared_video FKs with cascade) and, from 0007, only
``bazaar-vid_api_usage_metric``.  Plus the old unprefixed ``api_usage_metric`` (empty) and the utility
function ``public.show_db_tree()``: 31 tables.  Neither database has ``project.audio`` (0006) nor
``message_project_sequence_idx``, which the code declares: real drift.

``dev`` is the same schema with dev's drift: the exports pair as the code declares it (uuid ids, FKs
with cascade) but ``export_analytics.export_id`` text without FK; no ``bazaar-vid_api_usage_metric``;
the old ``api_usage_metric`` with rows; the schemas ``auth``, ``pgrst``, ``neon_auth``; column COMMENTs
on the design brief; ``message``, ``custom_component_job`` and ``scene_iteration`` with their columns in
the code's order; no ``show_db_tree()``.

``prod_partitioned`` is ``prod`` whose analytics table became what a growing analytics table becomes:
range-partitioned by month on ``created_at`` (``ANALYTICS_MONTHS`` monthly partitions + a default
partition), its rows spread over the months, orphans included.  PostgreSQL requires a partitioned
table's primary key to include the partition key, so its PK is ``(id, created_at)`` where the code
declares ``id`` alone: that difference is real drift the schema diff reports, outside the Sprint 90
fix's targets (types, FKs), which are the same as prod's.  Same tables, same row counts.

``reference`` (what the application code expects) is ``files/reference/bazaar_vid.sql``, read at call
time.

Row counts at scale 1 are the documented ones (134 exports of which 2 orphaned, 379 analytics rows of
which 6 point at those orphans, legacy tables with 621/389/3 rows, the four unused tables empty, money
tables with rows, ...); a scale factor multiplies them (the credit-package and usage-limit catalogues
stay fixed).  Generation is set-based (``INSERT ... SELECT FROM generate_series``) with deterministic
UUIDs (``md5(tag || n)::uuid``), so two seeds at the same scale are identical and scale 1,000 takes
seconds, not hours.  ``content_hash()`` names the content of a seed (schema + data at a scale).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_FILE = ROOT / "files" / "reference" / "bazaar_vid.sql"

# --------------------------------------------------------------------------- DDL: the introspected 22 tables
# Each block creates one table with its own FKs (to tables created before it) and indexes, so blocks
# can be used alone in dependency order (bench/typefix.py uses USER and PROJECT).

USER = '''CREATE TABLE "bazaar-vid_user" (
    "id" varchar(255) PRIMARY KEY NOT NULL,
    "name" varchar(255),
    "email" varchar(255) NOT NULL,
    "emailVerified" timestamp with time zone,
    "image" text,
    "isAdmin" boolean DEFAULT false NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP
);
-- migration 0003_fat_lizard
ALTER TABLE "bazaar-vid_user" ADD COLUMN "stripe_customer_id" text;
ALTER TABLE "bazaar-vid_user" ADD CONSTRAINT "bazaar-vid_user_stripe_customer_id_unique" UNIQUE ("stripe_customer_id");'''

METRIC = '''CREATE TABLE "bazaar-vid_metric" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "name" varchar(100) NOT NULL,
    "value" real NOT NULL,
    "tags" jsonb,
    "timestamp" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);'''

PROJECT = '''CREATE TABLE "bazaar-vid_project" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "userId" varchar(255) NOT NULL,
    "title" varchar(255) NOT NULL,
    "props" jsonb NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    "isWelcome" boolean DEFAULT true NOT NULL
);
ALTER TABLE "bazaar-vid_project" ADD CONSTRAINT "bazaar-vid_project_userId_bazaar-vid_user_id_fk"
    FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
CREATE INDEX "project_title_idx" ON "bazaar-vid_project" USING btree ("title");
CREATE UNIQUE INDEX "project_unique_name" ON "bazaar-vid_project" USING btree ("userId", "title");
CREATE INDEX "project_user_idx" ON "bazaar-vid_project" USING btree ("userId");'''


def _columns(columns: list[tuple[str, str]], order: list[str] | None = None) -> str:
    by_name = dict(columns)
    names = order or [name for name, _ in columns]
    assert sorted(names) == sorted(by_name), "a column order must name every column once"
    return ",\n".join(f'    "{name}" {by_name[name]}' for name in names)


# The next three tables have their columns in a different order in prod and dev: prod's is the
# introspected one (columns added over time by ALTER TABLE ... ADD COLUMN), dev's the order the code
# declares (shared/app/code-schema-before-sprint90.ts).  Same columns, same definitions.
MESSAGE_COLUMNS = [
    ("id", "uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL"),
    ("projectId", "uuid NOT NULL"),
    ("content", "text NOT NULL"),
    ("role", "varchar(50) NOT NULL"),
    ("createdAt", "timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL"),
    ("kind", "varchar(50) DEFAULT 'message' NOT NULL"),
    ("status", "varchar(50)"),
    ("updatedAt", "timestamp with time zone DEFAULT CURRENT_TIMESTAMP"),
    ("originalTsxCode", "text"),
    ("lastFixAttempt", "timestamp with time zone"),
    ("fixIssues", "text"),
    ("image_urls", "jsonb"),
    ("sequence", "integer DEFAULT 0"),
]
MESSAGE_CODE_ORDER = ["id", "projectId", "content", "role", "kind", "status", "image_urls", "sequence", "createdAt",
                      "updatedAt", "originalTsxCode", "lastFixAttempt", "fixIssues"]
MESSAGE_AFTER = '''ALTER TABLE "bazaar-vid_message" ADD CONSTRAINT "bazaar-vid_message_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "idx_message_project_sequence" ON "bazaar-vid_message" USING btree ("projectId", "sequence");
CREATE INDEX "message_project_idx" ON "bazaar-vid_message" USING btree ("projectId");
CREATE INDEX "message_status_idx" ON "bazaar-vid_message" USING btree ("status");'''

JOB_COLUMNS = [
    ("id", "uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL"),
    ("projectId", "uuid NOT NULL"),
    ("effect", "text NOT NULL"),
    ("tsxCode", "text"),
    ("status", "varchar(50) DEFAULT 'pending' NOT NULL"),
    ("outputUrl", "text"),
    ("errorMessage", "text"),
    ("retryCount", "integer DEFAULT 0 NOT NULL"),
    ("createdAt", "timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL"),
    ("updatedAt", "timestamp with time zone DEFAULT CURRENT_TIMESTAMP"),
    ("metadata", "jsonb"),
    ("statusMessageId", "uuid"),
    ("original_tsx_code", "text"),
    ("last_fix_attempt", "timestamp with time zone"),
    ("fix_issues", "text"),
    ("originalTsxCode", "text"),
    ("lastFixAttempt", "timestamp with time zone"),
    ("fixIssues", "text"),
    ("task_id", "text"),
    ("internal_status", "varchar(50)"),
    ("requires_input", "boolean DEFAULT false"),
    ("input_type", "text"),
    ("task_state", "jsonb"),
    ("artifacts", "jsonb"),
    ("history", "jsonb"),
    ("sse_enabled", "boolean DEFAULT false"),
    ("last_successful_step", "varchar(50)"),
    ("next_retry_at", "timestamp with time zone"),
    ("error_context", "jsonb"),
    ("checkpoint_data", "jsonb"),
    ("last_step", "varchar(50)"),
]
# The code's order; the three snake_case duplicates the code does not declare (original_tsx_code,
# last_fix_attempt, fix_issues) come last, as columns added later.
JOB_CODE_ORDER = ["id", "projectId", "effect", "tsxCode", "metadata", "statusMessageId", "status", "outputUrl",
                  "errorMessage", "retryCount", "last_successful_step", "next_retry_at", "error_context",
                  "checkpoint_data", "last_step", "task_id", "internal_status", "requires_input", "input_type",
                  "task_state", "artifacts", "history", "sse_enabled", "createdAt", "updatedAt", "originalTsxCode",
                  "lastFixAttempt", "fixIssues", "original_tsx_code", "last_fix_attempt", "fix_issues"]
JOB_AFTER = '''ALTER TABLE "bazaar-vid_custom_component_job"
    ADD CONSTRAINT "bazaar-vid_custom_component_job_projectId_bazaar-vid_project_id"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_custom_component_job" ADD CONSTRAINT "bazaar-vid_custom_component_job_statusMessageId_bazaar-vid_mess"
    FOREIGN KEY ("statusMessageId") REFERENCES "public"."bazaar-vid_message"("id") ON DELETE no action ON UPDATE no action;
CREATE INDEX "custom_component_job_project_idx" ON "bazaar-vid_custom_component_job" USING btree ("projectId");
CREATE INDEX "custom_component_job_status_idx" ON "bazaar-vid_custom_component_job" USING btree ("status");
CREATE INDEX "custom_component_job_task_id_idx" ON "bazaar-vid_custom_component_job" USING btree ("task_id");'''

ITERATION_COLUMNS = [
    ("id", "uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL"),
    ("scene_id", "uuid NOT NULL"),
    ("project_id", "uuid NOT NULL"),
    ("operation_type", "varchar(50) NOT NULL"),
    ("edit_complexity", "varchar(20)"),
    ("user_prompt", "text NOT NULL"),
    ("brain_reasoning", "text"),
    ("tool_reasoning", "text"),
    ("code_before", "text"),
    ("code_after", "text"),
    ("changes_applied", "jsonb"),
    ("changes_preserved", "jsonb"),
    ("generation_time_ms", "integer"),
    ("model_used", "varchar(50)"),
    ("temperature", "real"),
    ("tokens_used", "integer"),
    ("user_edited_again", "boolean DEFAULT false"),
    ("user_satisfaction_score", "integer"),
    ("session_id", "varchar(255)"),
    ("created_at", "timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL"),
    ("changeSource", "varchar(50) DEFAULT 'llm' NOT NULL"),
    ("message_id", "uuid"),
]
ITERATION_CODE_ORDER = ["id", "scene_id", "project_id", "operation_type", "edit_complexity", "user_prompt",
                        "brain_reasoning", "tool_reasoning", "code_before", "code_after", "changes_applied",
                        "changes_preserved", "generation_time_ms", "model_used", "temperature", "tokens_used",
                        "user_edited_again", "user_satisfaction_score", "session_id", "changeSource", "message_id",
                        "created_at"]
ITERATION_AFTER = '''ALTER TABLE "bazaar-vid_scene_iteration"
    ADD CONSTRAINT "bazaar-vid_scene_iteration_scene_id_bazaar-vid_scene_id_fk"
    FOREIGN KEY ("scene_id") REFERENCES "public"."bazaar-vid_scene"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_iteration" ADD CONSTRAINT "bazaar-vid_scene_iteration_project_id_bazaar-vid_project_id_fk"
    FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_iteration" ADD CONSTRAINT "bazaar-vid_scene_iteration_message_id_fkey"
    FOREIGN KEY ("message_id") REFERENCES "public"."bazaar-vid_message"("id") ON DELETE set null ON UPDATE no action;
CREATE INDEX "scene_iteration_message_idx" ON "bazaar-vid_scene_iteration" USING btree ("message_id");
CREATE INDEX "scene_iteration_operation_idx" ON "bazaar-vid_scene_iteration" USING btree ("operation_type", "edit_complexity");
CREATE INDEX "scene_iteration_project_idx" ON "bazaar-vid_scene_iteration" USING btree ("project_id");
CREATE INDEX "scene_iteration_satisfaction_idx" ON "bazaar-vid_scene_iteration" USING btree ("user_edited_again", "created_at");
CREATE INDEX "scene_iteration_scene_idx" ON "bazaar-vid_scene_iteration" USING btree ("scene_id");'''

SCENE = '''CREATE TABLE "bazaar-vid_scene" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "projectId" uuid NOT NULL,
    "order" integer DEFAULT 0 NOT NULL,
    "name" varchar(255) DEFAULT 'Scene' NOT NULL,
    "tsxCode" text NOT NULL,
    "props" jsonb,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    "publishedUrl" text,
    "publishedHash" text,
    "publishedAt" timestamp with time zone,
    "duration" integer DEFAULT 150 NOT NULL,
    "layout_json" text,
    "slug" varchar(255),
    "dominantColors" jsonb,
    "firstH1Text" text,
    "lastFocused" boolean DEFAULT false
);
ALTER TABLE "bazaar-vid_scene" ADD CONSTRAINT "bazaar-vid_scene_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "scene_order_idx" ON "bazaar-vid_scene" USING btree ("projectId", "order");
CREATE INDEX "scene_project_idx" ON "bazaar-vid_scene" USING btree ("projectId");
CREATE INDEX "scene_publish_idx" ON "bazaar-vid_scene" USING btree ("projectId", "publishedHash");'''

COMPONENT_ERROR = '''CREATE TABLE "bazaar-vid_component_error" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "jobId" uuid NOT NULL,
    "errorType" varchar(100) NOT NULL,
    "details" text NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
ALTER TABLE "bazaar-vid_component_error" ADD CONSTRAINT "bazaar-vid_component_error_jobId_bazaar-vid_custom_component_jo"
    FOREIGN KEY ("jobId") REFERENCES "public"."bazaar-vid_custom_component_job"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "component_error_job_idx" ON "bazaar-vid_component_error" USING btree ("jobId");'''

FEEDBACK = '''CREATE TABLE "bazaar-vid_feedback" (
    "id" text PRIMARY KEY NOT NULL,
    "content" text,
    "name" text,
    "email" text,
    "user_id" varchar(255),
    "prioritized_features" jsonb,
    "created_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "status" text DEFAULT 'new' NOT NULL,
    "admin_notes" text
);
ALTER TABLE "bazaar-vid_feedback" ADD CONSTRAINT "bazaar-vid_feedback_user_id_bazaar-vid_user_id_fk"
    FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE set null ON UPDATE no action;
CREATE INDEX "feedback_created_at_idx" ON "bazaar-vid_feedback" USING btree ("created_at");
CREATE INDEX "feedback_status_idx" ON "bazaar-vid_feedback" USING btree ("status");
CREATE INDEX "feedback_user_idx" ON "bazaar-vid_feedback" USING btree ("user_id");'''

SCENE_PLAN = '''CREATE TABLE "bazaar-vid_scene_plan" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "projectId" uuid NOT NULL,
    "messageId" uuid,
    "rawReasoning" text NOT NULL,
    "planData" jsonb NOT NULL,
    "userPrompt" text NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
ALTER TABLE "bazaar-vid_scene_plan" ADD CONSTRAINT "bazaar-vid_scene_plan_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_plan" ADD CONSTRAINT "bazaar-vid_scene_plan_messageId_bazaar-vid_message_id_fk"
    FOREIGN KEY ("messageId") REFERENCES "public"."bazaar-vid_message"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "scene_plan_project_idx" ON "bazaar-vid_scene_plan" USING btree ("projectId");'''

BRIEF = '''CREATE TABLE "bazaar-vid_animation_design_brief" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "projectId" uuid NOT NULL,
    "sceneId" uuid NOT NULL,
    "componentJobId" uuid,
    "designBrief" jsonb NOT NULL,
    "llmModel" varchar(100) NOT NULL,
    "status" varchar(50) DEFAULT 'pending' NOT NULL,
    "errorMessage" text,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    "originalTsxCode" text,
    "lastFixAttempt" timestamp with time zone,
    "fixIssues" text
);
ALTER TABLE "bazaar-vid_animation_design_brief" ADD CONSTRAINT "bazaar-vid_animation_design_brief_projectId_bazaar-vid_project_"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_animation_design_brief" ADD CONSTRAINT "bazaar-vid_animation_design_brief_componentJobId_bazaar-vid_cus"
    FOREIGN KEY ("componentJobId") REFERENCES "public"."bazaar-vid_custom_component_job"("id")
        ON DELETE no action ON UPDATE no action;
CREATE INDEX "animation_design_brief_component_idx" ON "bazaar-vid_animation_design_brief" USING btree ("componentJobId");
CREATE INDEX "animation_design_brief_project_idx" ON "bazaar-vid_animation_design_brief" USING btree ("projectId");
CREATE INDEX "animation_design_brief_scene_idx" ON "bazaar-vid_animation_design_brief" USING btree ("sceneId");'''

BRIEF_DEV_COMMENTS = '''COMMENT ON COLUMN "bazaar-vid_animation_design_brief"."originalTsxCode" IS 'TSX before autofix';
COMMENT ON COLUMN "bazaar-vid_animation_design_brief"."lastFixAttempt" IS 'When the fixer last ran';
COMMENT ON COLUMN "bazaar-vid_animation_design_brief"."fixIssues" IS 'Issues the fixer reported';'''

SCENE_SPECS = '''CREATE TABLE "bazaar-vid_scene_specs" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "projectId" uuid NOT NULL,
    "sceneId" varchar(255) NOT NULL,
    "name" varchar(255),
    "spec" jsonb NOT NULL,
    "version" varchar(10) DEFAULT '1.0' NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    "createdBy" varchar(255)
);
ALTER TABLE "bazaar-vid_scene_specs" ADD CONSTRAINT "bazaar-vid_scene_specs_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_specs" ADD CONSTRAINT "bazaar-vid_scene_specs_createdBy_bazaar-vid_user_id_fk"
    FOREIGN KEY ("createdBy") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
CREATE INDEX "scene_spec_created_at_idx" ON "bazaar-vid_scene_specs" USING btree ("createdAt");
CREATE INDEX "scene_spec_project_idx" ON "bazaar-vid_scene_specs" USING btree ("projectId");
CREATE INDEX "scene_spec_scene_id_idx" ON "bazaar-vid_scene_specs" USING btree ("sceneId");
CREATE INDEX "scene_spec_spec_gin_idx" ON "bazaar-vid_scene_specs" USING gin ("spec");
CREATE UNIQUE INDEX "scene_spec_unique_scene_id" ON "bazaar-vid_scene_specs" USING btree ("projectId", "sceneId");'''

EMAIL_SUBSCRIBER = '''CREATE TABLE "bazaar-vid_email_subscriber" (
    "id" text PRIMARY KEY NOT NULL,
    "email" text NOT NULL,
    "subscribed_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "status" text DEFAULT 'active' NOT NULL,
    "source" text DEFAULT 'homepage' NOT NULL,
    "user_id" varchar(255),
    CONSTRAINT "bazaar-vid_email_subscriber_email_unique" UNIQUE("email")
);
ALTER TABLE "bazaar-vid_email_subscriber" ADD CONSTRAINT "bazaar-vid_email_subscriber_user_id_bazaar-vid_user_id_fk"
    FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE set null ON UPDATE no action;
CREATE INDEX "email_subscriber_email_idx" ON "bazaar-vid_email_subscriber" USING btree ("email");
CREATE INDEX "email_subscriber_status_idx" ON "bazaar-vid_email_subscriber" USING btree ("status");
CREATE INDEX "email_subscriber_subscribed_at_idx" ON "bazaar-vid_email_subscriber" USING btree ("subscribed_at");'''

COMPONENT_TEST_CASE = '''CREATE TABLE "bazaar-vid_component_test_case" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "prompt" text NOT NULL,
    "category" varchar(50) NOT NULL,
    "complexity" integer NOT NULL,
    "edgeCases" jsonb DEFAULT '[]'::jsonb,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE INDEX "component_test_cases_category_idx" ON "bazaar-vid_component_test_case" USING btree ("category");'''

COMPONENT_EVALUATION_METRIC = '''CREATE TABLE "bazaar-vid_component_evaluation_metric" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "testCaseId" uuid NOT NULL,
    "timestamp" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "category" varchar(50) NOT NULL,
    "complexity" integer NOT NULL,
    "edgeCases" jsonb DEFAULT '[]'::jsonb,
    "success" boolean NOT NULL,
    "errorStage" varchar(50),
    "errorType" varchar(100),
    "errorMessage" text,
    "promptSubmissionTime" timestamp with time zone NOT NULL,
    "codeGenerationStartTime" timestamp with time zone,
    "codeGenerationEndTime" timestamp with time zone,
    "validationStartTime" timestamp with time zone,
    "validationEndTime" timestamp with time zone,
    "buildStartTime" timestamp with time zone,
    "buildEndTime" timestamp with time zone,
    "uploadStartTime" timestamp with time zone,
    "uploadEndTime" timestamp with time zone,
    "componentCompletionTime" timestamp with time zone,
    "timeToFirstToken" integer,
    "codeGenerationTime" integer,
    "validationTime" integer,
    "buildTime" integer,
    "uploadTime" integer,
    "totalTime" integer,
    "syntaxErrorCount" integer,
    "eslintErrorCount" integer,
    "eslintWarningCount" integer,
    "codeLength" integer,
    "renderSuccess" boolean,
    "renderErrorMessage" text,
    "componentId" varchar(100),
    "outputUrl" text,
    "taskId" uuid,
    "stateTransitions" jsonb DEFAULT '[]'::jsonb,
    "artifacts" jsonb DEFAULT '[]'::jsonb,
    "analysisNotes" text,
    "tags" jsonb DEFAULT '[]'::jsonb
);
ALTER TABLE "bazaar-vid_component_evaluation_metric"
    ADD CONSTRAINT "bazaar-vid_component_evaluation_metric_testCaseId_bazaar-vid_co"
    FOREIGN KEY ("testCaseId") REFERENCES "public"."bazaar-vid_component_test_case"("id") ON DELETE no action ON UPDATE no action;
CREATE INDEX "component_evaluation_metrics_category_idx" ON "bazaar-vid_component_evaluation_metric" USING btree ("category");
CREATE INDEX "component_evaluation_metrics_success_idx" ON "bazaar-vid_component_evaluation_metric" USING btree ("success");
CREATE INDEX "component_evaluation_metrics_test_case_id_idx" ON "bazaar-vid_component_evaluation_metric"
    USING btree ("testCaseId");
CREATE INDEX "component_evaluation_metrics_timestamp_idx" ON "bazaar-vid_component_evaluation_metric"
    USING btree ("timestamp");'''

AGENT_MESSAGE = '''CREATE TABLE "bazaar-vid_agent_message" (
    "id" text PRIMARY KEY NOT NULL,
    "sender" text NOT NULL,
    "recipient" text NOT NULL,
    "type" text NOT NULL,
    "payload" jsonb NOT NULL,
    "correlation_id" text,
    "status" text DEFAULT 'pending' NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "processedAt" timestamp with time zone
);
CREATE INDEX "agent_message_correlation_id_idx" ON "bazaar-vid_agent_message" USING btree ("correlation_id");
CREATE INDEX "agent_message_recipient_idx" ON "bazaar-vid_agent_message" USING btree ("recipient");
CREATE INDEX "agent_message_sender_idx" ON "bazaar-vid_agent_message" USING btree ("sender");
CREATE INDEX "agent_message_type_idx" ON "bazaar-vid_agent_message" USING btree ("type");'''

PROJECT_MEMORY = '''CREATE TABLE "bazaar-vid_project_memory" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "project_id" uuid NOT NULL,
    "memory_type" varchar(50) NOT NULL,
    "memory_key" varchar(255) NOT NULL,
    "memory_value" text NOT NULL,
    "confidence" real DEFAULT 0.8,
    "source_prompt" text,
    "created_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "updated_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    "expires_at" timestamp with time zone
);
ALTER TABLE "bazaar-vid_project_memory" ADD CONSTRAINT "bazaar-vid_project_memory_project_id_bazaar-vid_project_id_fk"
    FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "project_memory_project_idx" ON "bazaar-vid_project_memory" USING btree ("project_id");
CREATE INDEX "project_memory_type_key_idx" ON "bazaar-vid_project_memory" USING btree ("memory_type", "memory_key");'''

# Its two FKs as migration 0005_rapid_random re-created them (with cascade).
SHARED_VIDEO = '''CREATE TABLE "bazaar-vid_shared_video" (
    "id" varchar(255) PRIMARY KEY NOT NULL,
    "projectId" uuid NOT NULL,
    "userId" varchar(255) NOT NULL,
    "title" varchar(255),
    "description" text,
    "videoUrl" varchar(500),
    "thumbnailUrl" varchar(500),
    "isPublic" boolean DEFAULT true,
    "viewCount" integer DEFAULT 0,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "expiresAt" timestamp with time zone
);
ALTER TABLE "bazaar-vid_shared_video" ADD CONSTRAINT "bazaar-vid_shared_video_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_shared_video" ADD CONSTRAINT "bazaar-vid_shared_video_userId_bazaar-vid_user_id_fk"
    FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;'''

PATCH = '''CREATE TABLE "bazaar-vid_patch" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "projectId" uuid NOT NULL,
    "patch" jsonb NOT NULL,
    "createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
ALTER TABLE "bazaar-vid_patch" ADD CONSTRAINT "bazaar-vid_patch_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "patch_project_idx" ON "bazaar-vid_patch" USING btree ("projectId");'''

IMAGE_ANALYSIS = '''CREATE TABLE "bazaar-vid_image_analysis" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "project_id" uuid NOT NULL,
    "trace_id" varchar(100) NOT NULL,
    "image_urls" jsonb NOT NULL,
    "palette" jsonb NOT NULL,
    "typography" text NOT NULL,
    "mood" text NOT NULL,
    "layout_json" jsonb,
    "processing_time_ms" integer NOT NULL,
    "created_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    "used_in_scenes" jsonb
);
ALTER TABLE "bazaar-vid_image_analysis" ADD CONSTRAINT "bazaar-vid_image_analysis_project_id_bazaar-vid_project_id_fk"
    FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "image_analysis_created_idx" ON "bazaar-vid_image_analysis" USING btree ("created_at");
CREATE INDEX "image_analysis_project_idx" ON "bazaar-vid_image_analysis" USING btree ("project_id");
CREATE INDEX "image_analysis_trace_idx" ON "bazaar-vid_image_analysis" USING btree ("trace_id");'''

NEXTAUTH_VERIFICATION = '''CREATE TABLE "bazaar-vid_verificationToken" (
    "identifier" varchar(255) NOT NULL,
    "token" varchar(255) NOT NULL,
    "expires" timestamp with time zone NOT NULL,
    CONSTRAINT "bazaar-vid_verificationToken_identifier_token_pk" PRIMARY KEY("identifier", "token")
);'''

ACCOUNT = '''CREATE TABLE "bazaar-vid_account" (
    "userId" varchar(255) NOT NULL,
    "type" varchar(255) NOT NULL,
    "provider" varchar(255) NOT NULL,
    "providerAccountId" varchar(255) NOT NULL,
    "refresh_token" text,
    "access_token" text,
    "expires_at" integer,
    "token_type" varchar(255),
    "scope" varchar(255),
    "id_token" text,
    "session_state" varchar(255),
    CONSTRAINT "bazaar-vid_account_provider_providerAccountId_pk" PRIMARY KEY("provider", "providerAccountId")
);
ALTER TABLE "bazaar-vid_account" ADD CONSTRAINT "bazaar-vid_account_userId_bazaar-vid_user_id_fk"
    FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
CREATE INDEX "account_user_id_idx" ON "bazaar-vid_account" USING btree ("userId");'''


# --------------------------------------------------------------------------- DDL: the migrations after it
def exports_ddl(kind: str) -> str:
    """``bazaar-vid_exports`` (migration 0001); ``kind`` is ``code`` (uuid ids, FKs to user and project
    with cascade, as the code and dev have it) or ``text`` (prod's drift: text ids, no FKs)."""
    if kind == "code":
        id_col, user_col, project_col = ("uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL",
                                         "varchar(255) NOT NULL", "uuid NOT NULL")
        fks = '''
ALTER TABLE "bazaar-vid_exports" ADD CONSTRAINT "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk"
    FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_exports" ADD CONSTRAINT "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk"
    FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;'''
    elif kind == "text":
        id_col, user_col, project_col, fks = "text PRIMARY KEY NOT NULL", "text NOT NULL", "text NOT NULL", ""
    else:
        raise ValueError(f"unknown exports kind {kind!r}: use code or text")
    return f'''CREATE TABLE "bazaar-vid_exports" (
    "id" {id_col},
    "user_id" {user_col},
    "project_id" {project_col},
    "render_id" text NOT NULL,
    "status" text DEFAULT 'pending' NOT NULL,
    "progress" integer DEFAULT 0,
    "format" text DEFAULT 'mp4' NOT NULL,
    "quality" text DEFAULT 'high' NOT NULL,
    "output_url" text,
    "file_size" integer,
    "duration" integer,
    "error" text,
    "metadata" jsonb,
    "download_count" integer DEFAULT 0,
    "last_downloaded_at" timestamp,
    "created_at" timestamp DEFAULT now() NOT NULL,
    "completed_at" timestamp,
    CONSTRAINT "bazaar-vid_exports_render_id_unique" UNIQUE("render_id")
);{fks}
CREATE INDEX "exports_user_idx" ON "bazaar-vid_exports" USING btree ("user_id");
CREATE INDEX "exports_project_idx" ON "bazaar-vid_exports" USING btree ("project_id");
CREATE INDEX "exports_render_idx" ON "bazaar-vid_exports" USING btree ("render_id");
CREATE INDEX "exports_created_idx" ON "bazaar-vid_exports" USING btree ("created_at");'''


ANALYTICS_MONTHS = ("2025-03", "2025-04", "2025-05")  # the partitioned variant's monthly partitions


def _month_after(month: str) -> str:
    year, mon = map(int, month.split("-"))
    return f"{year + mon // 12}-{mon % 12 + 1:02d}"


def analytics_ddl(kind: str, partitioned: bool = False) -> str:
    """``bazaar-vid_export_analytics`` (migration 0001); ``kind`` is ``code`` (export_id uuid with its FK
    to exports) or ``text`` (what prod and dev both have: export_id text, no FK).  ``partitioned``: range
    partitions by month on ``created_at`` (one per ``ANALYTICS_MONTHS`` + a default), PK ``(id, created_at)``."""
    if kind == "code":
        col, fk = "uuid NOT NULL", '''
ALTER TABLE "bazaar-vid_export_analytics" ADD CONSTRAINT "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"
    FOREIGN KEY ("export_id") REFERENCES "public"."bazaar-vid_exports"("id") ON DELETE cascade ON UPDATE no action;'''
    elif kind == "text":
        col, fk = "text NOT NULL", ""
    else:
        raise ValueError(f"unknown analytics kind {kind!r}: use code or text")
    pk, partitions = ("PRIMARY KEY", "") if not partitioned else ("", "".join(
        f'''
CREATE TABLE "bazaar-vid_export_analytics_{m.replace('-', '_')}" PARTITION OF "bazaar-vid_export_analytics"
    FOR VALUES FROM ('{m}-01') TO ('{_month_after(m)}-01');''' for m in ANALYTICS_MONTHS) + '''
CREATE TABLE "bazaar-vid_export_analytics_default" PARTITION OF "bazaar-vid_export_analytics" DEFAULT;''')
    tail = "\n) PARTITION BY RANGE (\"created_at\");" if partitioned else "\n);"
    key = ',\n    CONSTRAINT "bazaar-vid_export_analytics_pkey" PRIMARY KEY ("id", "created_at")' if partitioned else ""
    return f'''CREATE TABLE "bazaar-vid_export_analytics" (
    "id" uuid {pk + " " if pk else ""}DEFAULT gen_random_uuid() NOT NULL,
    "export_id" {col},
    "event" text NOT NULL,
    "event_data" jsonb,
    "user_agent" text,
    "ip_address" text,
    "created_at" timestamp DEFAULT now() NOT NULL{key}{tail}{partitions}{fk}
CREATE INDEX "export_analytics_export_idx" ON "bazaar-vid_export_analytics" USING btree ("export_id");
CREATE INDEX "export_analytics_event_idx" ON "bazaar-vid_export_analytics" USING btree ("event");
CREATE INDEX "export_analytics_created_idx" ON "bazaar-vid_export_analytics" USING btree ("created_at");'''


CREDITS = '''-- migration 0002_clear_sebastian_shaw
CREATE TABLE "bazaar-vid_credit_package" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "name" varchar(100) NOT NULL,
    "credits" integer NOT NULL,
    "price" integer NOT NULL,
    "stripe_price_id" text,
    "bonus_percentage" integer DEFAULT 0 NOT NULL,
    "popular" boolean DEFAULT false NOT NULL,
    "active" boolean DEFAULT true NOT NULL,
    "sort_order" integer DEFAULT 0 NOT NULL,
    "created_at" timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT "bazaar-vid_credit_package_stripe_price_id_unique" UNIQUE("stripe_price_id")
);
CREATE TABLE "bazaar-vid_credit_transaction" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "user_id" varchar(255) NOT NULL,
    "type" text NOT NULL,
    "amount" integer NOT NULL,
    "balance" integer NOT NULL,
    "description" text NOT NULL,
    "metadata" jsonb,
    "stripe_payment_intent_id" text,
    "created_at" timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE "bazaar-vid_user_credits" (
    "user_id" varchar(255) PRIMARY KEY NOT NULL,
    "daily_credits" integer DEFAULT 150 NOT NULL,
    "purchased_credits" integer DEFAULT 0 NOT NULL,
    "lifetime_credits" integer DEFAULT 0 NOT NULL,
    "daily_reset_at" timestamp with time zone NOT NULL,
    "created_at" timestamp with time zone DEFAULT now() NOT NULL,
    "updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE "bazaar-vid_credit_transaction" ADD CONSTRAINT "bazaar-vid_credit_transaction_user_id_bazaar-vid_user_id_fk"
    FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_user_credits" ADD CONSTRAINT "bazaar-vid_user_credits_user_id_bazaar-vid_user_id_fk"
    FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
CREATE INDEX "credit_packages_active_idx" ON "bazaar-vid_credit_package" USING btree ("active");
CREATE INDEX "credit_packages_sort_idx" ON "bazaar-vid_credit_package" USING btree ("sort_order");
CREATE INDEX "credit_transactions_user_idx" ON "bazaar-vid_credit_transaction" USING btree ("user_id");
CREATE INDEX "credit_transactions_type_idx" ON "bazaar-vid_credit_transaction" USING btree ("type");
CREATE INDEX "credit_transactions_created_idx" ON "bazaar-vid_credit_transaction" USING btree ("created_at");
CREATE INDEX "credit_transactions_stripe_idx" ON "bazaar-vid_credit_transaction" USING btree ("stripe_payment_intent_id");
CREATE INDEX "user_credits_daily_reset_idx" ON "bazaar-vid_user_credits" USING btree ("daily_reset_at");'''

USAGE = '''-- migration 0004_empty_hercules
CREATE TABLE "bazaar-vid_usage_limit" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "limit_key" varchar(100) NOT NULL,
    "free_tier_limit" integer DEFAULT 0 NOT NULL,
    "description" text,
    "reset_period" varchar(20) DEFAULT 'daily' NOT NULL,
    "is_active" boolean DEFAULT true NOT NULL,
    "created_at" timestamp with time zone DEFAULT now() NOT NULL,
    "updated_at" timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT "bazaar-vid_usage_limit_limit_key_unique" UNIQUE("limit_key")
);
CREATE TABLE "bazaar-vid_user_usage" (
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "user_id" varchar(255) NOT NULL,
    "date" date NOT NULL,
    "usage_type" varchar(50) NOT NULL,
    "count" integer DEFAULT 0 NOT NULL,
    "project_id" uuid,
    "metadata" jsonb,
    "created_at" timestamp with time zone DEFAULT now() NOT NULL,
    "updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE "bazaar-vid_user_usage" ADD CONSTRAINT "bazaar-vid_user_usage_user_id_bazaar-vid_user_id_fk"
    FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_user_usage" ADD CONSTRAINT "bazaar-vid_user_usage_project_id_bazaar-vid_project_id_fk"
    FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE set null ON UPDATE no action;
CREATE INDEX "usage_limits_active_idx" ON "bazaar-vid_usage_limit" USING btree ("is_active");
CREATE INDEX "usage_limits_reset_period_idx" ON "bazaar-vid_usage_limit" USING btree ("reset_period");
CREATE INDEX "user_usage_user_date_idx" ON "bazaar-vid_user_usage" USING btree ("user_id", "date");
CREATE INDEX "user_usage_type_idx" ON "bazaar-vid_user_usage" USING btree ("usage_type");
CREATE INDEX "user_usage_project_idx" ON "bazaar-vid_user_usage" USING btree ("project_id");
CREATE UNIQUE INDEX "user_usage_unique_idx" ON "bazaar-vid_user_usage" USING btree ("user_id", "date", "usage_type");'''

# The twelve columns of 0007's table, which the old unprefixed duplicate has too (no metadata column).
METRIC_COLUMNS = '''
    "id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    "provider" varchar(50) NOT NULL,
    "model" varchar(100) NOT NULL,
    "userId" varchar(255),
    "projectId" uuid,
    "toolName" varchar(100),
    "success" boolean NOT NULL,
    "responseTime" integer NOT NULL,
    "tokenCount" integer,
    "errorType" varchar(100),
    "errorMessage" text,
    "timestamp" timestamp with time zone DEFAULT now() NOT NULL'''

# Migration 0007_illegal_liz_osborn, its api_usage_metric part only (the paywall and promo-code
# tables of 0007 are post-sprint feature work neither database had).  Prod only.
PREFIXED_METRIC = '''CREATE TABLE "bazaar-vid_api_usage_metric" (''' + METRIC_COLUMNS + '''
);
ALTER TABLE "bazaar-vid_api_usage_metric" ADD CONSTRAINT "bazaar-vid_api_usage_metric_userId_bazaar-vid_user_id_fk"
    FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_api_usage_metric" ADD CONSTRAINT "bazaar-vid_api_usage_metric_projectId_bazaar-vid_project_id_fk"
    FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE no action ON UPDATE no action;
CREATE INDEX "api_metrics_timestamp_idx" ON "bazaar-vid_api_usage_metric" USING btree ("timestamp");
CREATE INDEX "api_metrics_provider_idx" ON "bazaar-vid_api_usage_metric" USING btree ("provider");
CREATE INDEX "api_metrics_user_idx" ON "bazaar-vid_api_usage_metric" USING btree ("userId");
CREATE INDEX "api_metrics_success_idx" ON "bazaar-vid_api_usage_metric" USING btree ("success");
CREATE INDEX "api_metrics_composite_idx" ON "bazaar-vid_api_usage_metric" USING btree ("provider", "timestamp", "success");'''

# The old, unprefixed duplicate (both databases; empty in prod, with rows in dev): the same columns as
# 0007's table, no metadata column, no FKs, no index but its primary key.
OLD_METRIC = '''CREATE TABLE "api_usage_metric" (''' + METRIC_COLUMNS + "\n);"

EMPTY_TABLE_NAMES = ["bazaar-vid_component_error", "bazaar-vid_patch", "bazaar-vid_scene_plan",
                     "bazaar-vid_scene_specs"]
LEGACY_TABLE_NAMES = ["bazaar-vid_project_memory", "bazaar-vid_metric", "bazaar-vid_agent_message"]
AUTH_SCHEMAS = ["auth", "pgrst", "neon_auth"]

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


def _ordered_table(name: str, columns: list[tuple[str, str]], order: list[str] | None, after: str) -> str:
    return f'CREATE TABLE "{name}" (\n{_columns(columns, order)}\n);\n{after}'


def _schema(variant: str) -> list[str]:
    """The public schema of prod or dev, in dependency order."""
    code_order = variant == "dev"
    partitioned = variant == "prod_partitioned"
    return [
        USER, METRIC, PROJECT,
        _ordered_table("bazaar-vid_message", MESSAGE_COLUMNS, MESSAGE_CODE_ORDER if code_order else None,
                       MESSAGE_AFTER),
        SCENE,
        _ordered_table("bazaar-vid_custom_component_job", JOB_COLUMNS, JOB_CODE_ORDER if code_order else None,
                       JOB_AFTER),
        COMPONENT_ERROR, FEEDBACK, SCENE_PLAN, BRIEF, SCENE_SPECS, EMAIL_SUBSCRIBER,
        _ordered_table("bazaar-vid_scene_iteration", ITERATION_COLUMNS,
                       ITERATION_CODE_ORDER if code_order else None, ITERATION_AFTER),
        COMPONENT_TEST_CASE, COMPONENT_EVALUATION_METRIC, AGENT_MESSAGE, PROJECT_MEMORY, SHARED_VIDEO, PATCH,
        IMAGE_ANALYSIS, NEXTAUTH_VERIFICATION, ACCOUNT,
        "-- migration 0001_fair_paibok", exports_ddl("code" if variant == "dev" else "text"),
        analytics_ddl("text", partitioned=partitioned),
        CREDITS, USAGE,
    ]


def ddl(variant: str) -> str:
    """The schema of ``prod`` or ``dev``; ``reference`` is files/reference/bazaar_vid.sql as it is now."""
    if variant == "reference":
        return REFERENCE_FILE.read_text()
    if variant in ("prod", "prod_partitioned"):
        parts = _schema(variant) + ["-- migration 0007_illegal_liz_osborn (api_usage_metric only)", PREFIXED_METRIC,
                                   "-- the old duplicate, empty", OLD_METRIC, SHOW_DB_TREE]
    elif variant == "dev":
        parts = _schema("dev") + [BRIEF_DEV_COMMENTS, "-- the old duplicate, with rows", OLD_METRIC,
                                  AUTH_SCHEMAS_DDL]
    else:
        raise ValueError(f"unknown variant {variant!r}: use reference, prod, prod_partitioned or dev")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- data
# Documented counts (scale 1).  Keys are the logical names used below.
COUNTS = {
    "prod": {
        "users": 40, "projects": 80, "scenes": 240, "messages": 600, "jobs": 60, "iterations": 300,
        "briefs": 60, "exports_ok": 132, "exports_orphan": 2, "analytics_ok": 373, "analytics_orphan": 6,
        "prefixed_metric": 500, "old_metric": 0, "project_memory": 621, "metric": 389, "agent_message": 3,
        "feedback": 25, "email_subscribers": 30, "verification_tokens": 5, "shared_videos": 20,
        "image_analyses": 30, "test_cases": 12, "evaluation_metrics": 48, "credit_packages": 4,
        "credit_transactions": 160, "usage_limits": 3, "user_usage": 120,
    },
    "dev": {
        "users": 12, "projects": 20, "scenes": 60, "messages": 150, "jobs": 15, "iterations": 75,
        "briefs": 15, "exports_ok": 40, "exports_orphan": 0, "analytics_ok": 110, "analytics_orphan": 0,
        "prefixed_metric": 0, "old_metric": 250, "project_memory": 0, "metric": 0, "agent_message": 0,
        "feedback": 8, "email_subscribers": 10, "verification_tokens": 2, "shared_videos": 5,
        "image_analyses": 8, "test_cases": 12, "evaluation_metrics": 24, "credit_packages": 4,
        "credit_transactions": 48, "usage_limits": 3, "user_usage": 36, "users_sync": 5,
    },
}
# Catalogues whose rows do not grow with the data: the same at every scale.
FIXED = {"credit_packages", "usage_limits"}

BASE_TIME = "timestamptz '2025-03-01 09:00:00+00'"

# The fixed catalogues (literal rows).
CREDIT_PACKAGES = [  # name, credits, price (cents), bonus %, popular
    ("Starter", 100, 500, 0, False), ("Creator", 500, 2000, 10, True), ("Pro", 1500, 5000, 20, False),
    ("Studio", 5000, 15000, 30, False)]
USAGE_LIMITS = [  # limit_key, free_tier_limit, description, reset_period
    ("prompts", 10, "Prompts per day on the free tier", "daily"),
    ("projects", 3, "Projects a free user can create", "never"),
    ("exports", 5, "Video exports per day on the free tier", "daily")]


def base_variant(variant: str) -> str:
    """The variant whose data a variant has (``prod_partitioned`` holds prod's rows)."""
    return "prod" if variant == "prod_partitioned" else variant


def counts(variant: str, scale: float = 1.0) -> dict[str, int]:
    """Row counts per logical set at a scale (zero stays zero, anything else at least 1; catalogues fixed)."""
    return {key: n if key in FIXED else (0 if n == 0 else max(1, round(n * scale)))
            for key, n in COUNTS[base_variant(variant)].items()}


def expected_table_rows(variant: str, scale: float = 1.0) -> dict[str, int]:
    """Rows per table a seed at ``scale`` holds (every table of the variant): what the drift test checks."""
    c = counts(variant, scale)
    rows = {
        "bazaar-vid_user": c["users"], "bazaar-vid_account": c["users"], "bazaar-vid_project": c["projects"],
        "bazaar-vid_scene": c["scenes"], "bazaar-vid_message": c["messages"],
        "bazaar-vid_custom_component_job": c["jobs"], "bazaar-vid_scene_iteration": c["iterations"],
        "bazaar-vid_animation_design_brief": c["briefs"],
        "bazaar-vid_feedback": c["feedback"], "bazaar-vid_email_subscriber": c["email_subscribers"],
        "bazaar-vid_verificationToken": c["verification_tokens"], "bazaar-vid_shared_video": c["shared_videos"],
        "bazaar-vid_image_analysis": c["image_analyses"], "bazaar-vid_component_test_case": c["test_cases"],
        "bazaar-vid_component_evaluation_metric": c["evaluation_metrics"],
        "bazaar-vid_exports": c["exports_ok"] + c["exports_orphan"],
        "bazaar-vid_export_analytics": c["analytics_ok"] + c["analytics_orphan"],
        "bazaar-vid_credit_package": c["credit_packages"], "bazaar-vid_credit_transaction": c["credit_transactions"],
        "bazaar-vid_user_credits": c["users"], "bazaar-vid_usage_limit": c["usage_limits"],
        "bazaar-vid_user_usage": c["user_usage"],
        "bazaar-vid_project_memory": c["project_memory"], "bazaar-vid_metric": c["metric"],
        "bazaar-vid_agent_message": c["agent_message"],
        "api_usage_metric": c["old_metric"],
    }
    rows.update({name: 0 for name in EMPTY_TABLE_NAMES})
    if base_variant(variant) == "prod":
        rows["bazaar-vid_api_usage_metric"] = c["prefixed_metric"]
    else:
        rows["neon_auth.users_sync"] = c["users_sync"]
    return rows


def _uuid(tag: str, expr: str = "i") -> str:
    return f"md5('{tag}-' || ({expr})::text)::uuid"


def _nth(expr: str, n: int) -> str:
    """Round robin: ``expr`` (1-based) onto 1..n."""
    return f"((({expr}) - 1) % {n}) + 1"


def _at(expr: str, step: str) -> str:
    return f"({BASE_TIME} + ({expr}) * interval '{step}')"


def _pick(values: list[str], expr: str) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"(ARRAY[{quoted}])[1 + (({expr}) % {len(values)})]"


def _md5_hex(tag: str, expr: str = "i", length: int = 32) -> str:
    return f"substr(md5('{tag}-' || ({expr})::text), 1, {length})"


# 768 hex characters of scene code per row: six SHA-512 digests, inline (no subquery per row).
TSX_FILLER = " || ".join(f"encode(sha512((i::text || '-{k}')::bytea), 'hex')" for k in range(1, 7))


def data_sql(variant: str, scale: float = 1.0) -> list[str]:
    """Set-based INSERTs filling a freshly created ``variant`` schema.

    Project p belongs to user ((p - 1) % users) + 1, so project u is user u's (there are more projects
    than users); rows pointing at a project also point at its owner, its scenes, messages and jobs.
    """
    c = counts(variant, scale)
    users, projects, scenes, messages, jobs = c["users"], c["projects"], c["scenes"], c["messages"], c["jobs"]

    def owner(project_expr: str) -> str:
        return _uuid("user", _nth(project_expr, users)) + "::text"

    def project(expr: str) -> str:
        return _uuid("project", expr)

    stmts = [
        f'''INSERT INTO "bazaar-vid_user" ("id", "name", "email", "emailVerified", "image", "isAdmin", "createdAt",
                                          "updatedAt", "stripe_customer_id")
            SELECT {_uuid('user')}::text, 'User ' || i, 'user' || i || '@example.com',
                   CASE WHEN i % 3 = 0 THEN NULL ELSE {_at('i', '1 hour')} END,
                   'https://cdn.example.com/avatars/' || i || '.png', i = 1,
                   {_at('i', '1 hour')}, {_at('i', '1 hour')} + interval '3 days',
                   CASE WHEN i % 4 = 0 THEN 'cus_' || {_md5_hex('cus', 'i', 14)} END
              FROM generate_series(1, {users}) i''',
        f'''INSERT INTO "bazaar-vid_account" ("userId", "type", "provider", "providerAccountId", "access_token",
                                             "expires_at", "token_type", "scope", "id_token")
            SELECT {_uuid('user')}::text, 'oauth', CASE WHEN i % 2 = 0 THEN 'github' ELSE 'google' END,
                   (100000 + i)::text, 'gho_' || md5('token-' || i), 1767225600 + i, 'bearer',
                   CASE WHEN i % 2 = 0 THEN 'read:user user:email' ELSE 'openid email profile' END,
                   CASE WHEN i % 2 = 1 THEN 'eyJhbGciOiJSUzI1NiJ9.' || md5('id-token-' || i) END
              FROM generate_series(1, {users}) i''',
        f'''INSERT INTO "bazaar-vid_project" ("id", "userId", "title", "props", "createdAt", "updatedAt", "isWelcome")
            SELECT {project('p')}, {owner('p')}, 'Project ' || p,
                   jsonb_build_object('meta', jsonb_build_object('title', 'Project ' || p, 'duration', 150 + p % 90,
                                                                 'backgroundColor', '#000000'),
                                      'scenes', jsonb_build_array()),
                   {_at('p', '2 hours')}, {_at('p', '3 hours')}, p <= {users}
              FROM generate_series(1, {projects}) p''',
        # message i: project ((i - 1) % projects) + 1, its ((i - 1) / projects) + 1-th message
        f'''INSERT INTO "bazaar-vid_message" ("id", "projectId", "content", "role", "createdAt", "kind", "status",
                                             "updatedAt", "image_urls", "sequence")
            SELECT {_uuid('message')}, {project(_nth('i', projects))},
                   CASE WHEN i % 2 = 0 THEN 'Scene updated: ' || md5('content-' || i)
                        ELSE 'Make scene ' || i || ' brighter and add a title card' END,
                   CASE WHEN i % 2 = 0 THEN 'assistant' ELSE 'user' END, {_at('i', '11 minutes')},
                   CASE WHEN i % 10 = 0 THEN 'status' ELSE 'message' END,
                   CASE WHEN i % 2 = 0 THEN 'success' END, {_at('i', '11 minutes')},
                   CASE WHEN i % 9 = 1 THEN jsonb_build_array('https://r2.example.com/uploads/' || i || '.png') END,
                   ((i - 1) / {projects}) + 1
              FROM generate_series(1, {messages}) i''',
        f'''INSERT INTO "bazaar-vid_scene" ("id", "projectId", "order", "name", "tsxCode", "props", "createdAt",
                                           "updatedAt", "publishedUrl", "publishedHash", "publishedAt", "duration",
                                           "layout_json", "slug", "dominantColors", "firstH1Text", "lastFocused")
            SELECT {_uuid('scene')}, {project(_nth('i', projects))}, (i - 1) / {projects}, 'Scene ' || i,
                   'export default function Scene' || i || '() {{ return <AbsoluteFill>' ||
                   {TSX_FILLER} ||
                   '</AbsoluteFill>; }}',
                   jsonb_build_object('durationInFrames', 90 + i % 60, 'fps', 30),
                   {_at('i', '17 minutes')}, {_at('i', '17 minutes')} + interval '5 minutes',
                   CASE WHEN i % 6 = 0 THEN 'https://r2.example.com/scenes/' || i || '.js' END,
                   CASE WHEN i % 6 = 0 THEN md5('bundle-' || i) || md5('bundle2-' || i) END,
                   CASE WHEN i % 6 = 0 THEN {_at('i', '17 minutes')} + interval '1 hour' END,
                   90 + (i % 5) * 30,
                   CASE WHEN i % 4 = 0 THEN jsonb_build_object('layout', 'split', 'columns', 2)::text END,
                   'scene-' || i || '-' || substr(md5('slug-' || i), 1, 6),
                   jsonb_build_array('#000000', '#3B82F6', '#' || substr(md5('color-' || i), 1, 6)),
                   'Headline ' || i, i <= {projects}
              FROM generate_series(1, {scenes}) i''',
        # job i: project ((i - 1) % projects) + 1; its status message is that project's first message
        f'''INSERT INTO "bazaar-vid_custom_component_job" ("id", "projectId", "effect", "tsxCode", "status",
                 "outputUrl", "errorMessage", "retryCount", "createdAt", "updatedAt", "metadata", "statusMessageId",
                 "task_id", "internal_status", "requires_input", "sse_enabled", "last_successful_step", "last_step",
                 "error_context")
            SELECT {_uuid('job')}, {project(_nth('i', projects))},
                   'particle burst ' || i, 'export const Effect' || i || ' = () => null;',
                   CASE WHEN i % 4 = 0 THEN 'error' ELSE 'success' END,
                   CASE WHEN i % 4 <> 0 THEN 'https://r2.example.com/components/' || i || '.js' END,
                   CASE WHEN i % 4 = 0 THEN 'esbuild: Unexpected token' END, CASE WHEN i % 4 = 0 THEN 2 ELSE 0 END,
                   {_at('i', '29 minutes')}, {_at('i', '29 minutes')} + interval '2 minutes',
                   jsonb_build_object('intent', 'effect', 'requestedBy', 'chat'),
                   {_uuid('message', _nth(_nth('i', projects), messages))},
                   'task-' || {_md5_hex('task', 'i', 12)}, CASE WHEN i % 4 = 0 THEN 'failed' ELSE 'completed' END,
                   false, i % 3 = 0, CASE WHEN i % 4 = 0 THEN 'generate' ELSE 'upload' END,
                   CASE WHEN i % 4 = 0 THEN 'build' ELSE 'upload' END,
                   CASE WHEN i % 4 = 0 THEN jsonb_build_object('stage', 'build', 'attempt', 2) END
              FROM generate_series(1, {jobs}) i''',
        f'''INSERT INTO "bazaar-vid_scene_iteration" ("id", "scene_id", "project_id", "operation_type",
                 "edit_complexity", "user_prompt", "brain_reasoning", "tool_reasoning", "code_before", "code_after",
                 "changes_applied", "changes_preserved", "generation_time_ms", "model_used", "temperature",
                 "tokens_used", "user_edited_again", "user_satisfaction_score", "session_id", "created_at",
                 "changeSource", "message_id")
            SELECT {_uuid('iteration')}, {_uuid('scene', _nth('i', scenes))},
                   {project(_nth(_nth('i', scenes), projects))},
                   {_pick(['create', 'edit', 'delete'], 'i')}, {_pick(['surgical', 'creative', 'structural'], 'i')},
                   'iteration prompt ' || i, 'The user wants to change scene ' || i, 'Edited the title block',
                   'code before ' || md5('b' || i), 'code after ' || md5('a' || i),
                   jsonb_build_array('title color', 'font size'), jsonb_build_array('layout'),
                   800 + (i * 37) % 9000, {_pick(['gpt-4.1', 'gpt-4.1-mini', 'claude-sonnet-4'], 'i')},
                   0.3 + (i % 5) / 10.0, 500 + (i * 13) % 4000, i % 4 = 0, CASE WHEN i % 7 = 0 THEN 1 + i % 5 END,
                   'sess-' || {_md5_hex('session', 'i / 10', 16)}, {_at('i', '13 minutes')},
                   CASE WHEN i % 8 = 0 THEN 'user' ELSE 'llm' END,
                   CASE WHEN i % 5 = 0 THEN NULL ELSE {_uuid('message', _nth(_nth(_nth('i', scenes), projects), messages))} END
              FROM generate_series(1, {c['iterations']}) i''',
        # brief i: project p = ((i - 1) % projects) + 1, that project's first scene and, if any, its job
        f'''INSERT INTO "bazaar-vid_animation_design_brief" ("id", "projectId", "sceneId", "componentJobId",
                 "designBrief", "llmModel", "status", "errorMessage", "createdAt", "updatedAt")
            SELECT {_uuid('brief')}, {project('p')}, {_uuid('scene', _nth('p', scenes))},
                   CASE WHEN p <= {jobs} THEN {_uuid('job', 'p')} END,
                   jsonb_build_object('sceneName', 'Scene ' || p, 'colors', jsonb_build_array('#111', '#eee'),
                                      'elements', jsonb_build_array(jsonb_build_object('type', 'text', 'id', 'title'))),
                   'gpt-4o-mini', CASE WHEN i % 10 = 0 THEN 'error' ELSE 'complete' END,
                   CASE WHEN i % 10 = 0 THEN 'LLM response was not valid JSON' END,
                   {_at('i', '31 minutes')}, {_at('i', '31 minutes')} + interval '1 minute'
              FROM generate_series(1, {c['briefs']}) i, LATERAL (SELECT {_nth('i', projects)} AS p) x''',
        f'''INSERT INTO "bazaar-vid_feedback" ("id", "content", "name", "email", "user_id", "prioritized_features",
                                              "created_at", "status", "admin_notes")
            SELECT {_uuid('feedback')}::text, 'Feedback ' || i || ': the editor is great, exports are slow',
                   CASE WHEN i % 3 = 0 THEN NULL ELSE 'User ' || {_nth('i', users)} END,
                   CASE WHEN i % 3 = 0 THEN 'anon' || i || '@example.org'
                        ELSE 'user' || {_nth('i', users)} || '@example.com' END,
                   CASE WHEN i % 3 = 0 THEN NULL ELSE {_uuid('user', _nth('i', users))}::text END,
                   jsonb_build_array({_pick(['faster-exports', 'audio', 'templates', 'collaboration'], 'i')},
                                     {_pick(['figma-import', 'github-import', 'brand-kits'], 'i')}),
                   {_at('i', '1 day')}, {_pick(['new', 'reviewed', 'planned', 'implemented'], 'i')},
                   CASE WHEN i % 4 = 1 THEN 'Follow up after the next release' END
              FROM generate_series(1, {c['feedback']}) i''',
        f'''INSERT INTO "bazaar-vid_email_subscriber" ("id", "email", "subscribed_at", "status", "source", "user_id")
            SELECT {_uuid('subscriber')}::text, 'subscriber' || i || '@example.net', {_at('i', '9 hours')},
                   CASE WHEN i % 10 = 0 THEN 'unsubscribed' ELSE 'active' END,
                   {_pick(['homepage', 'footer', 'pricing'], 'i')},
                   CASE WHEN i % 2 = 0 THEN {_uuid('user', _nth('i', users))}::text END
              FROM generate_series(1, {c['email_subscribers']}) i''',
        f'''INSERT INTO "bazaar-vid_verificationToken" ("identifier", "token", "expires")
            SELECT 'user' || {_nth('i', users)} || '@example.com', md5('verify-' || i) || md5('verify2-' || i),
                   {_at('i', '1 day')} + interval '1 day'
              FROM generate_series(1, {c['verification_tokens']}) i''',
        f'''INSERT INTO "bazaar-vid_shared_video" ("id", "projectId", "userId", "title", "description", "videoUrl",
                                                  "thumbnailUrl", "isPublic", "viewCount", "createdAt", "expiresAt")
            SELECT {_uuid('shared-video')}::text, {project('p')}, {owner('p')}, 'Project ' || p || ' teaser',
                   'Made with Bazaar', 'https://r2.example.com/shared/' || i || '.mp4',
                   'https://r2.example.com/shared/' || i || '.jpg', i % 5 <> 0, (i * 17) % 500,
                   {_at('i', '6 hours')}, CASE WHEN i % 4 = 0 THEN {_at('i', '6 hours')} + interval '30 days' END
              FROM generate_series(1, {c['shared_videos']}) i, LATERAL (SELECT {_nth('3 * i', projects)} AS p) x''',
        f'''INSERT INTO "bazaar-vid_image_analysis" ("id", "project_id", "trace_id", "image_urls", "palette",
                 "typography", "mood", "layout_json", "processing_time_ms", "created_at", "used_in_scenes")
            SELECT {_uuid('image-analysis')}, {project('p')}, 'img-' || {_md5_hex('trace', 'i', 16)},
                   jsonb_build_array('https://r2.example.com/uploads/' || i || '.png'),
                   jsonb_build_array('#0F172A', '#F8FAFC', '#' || substr(md5('palette-' || i), 1, 6)),
                   {_pick(['Bold sans-serif headline, light body', 'Serif display, generous spacing'], 'i')},
                   {_pick(['energetic', 'calm', 'professional', 'playful'], 'i')},
                   jsonb_build_object('grid', '12-col', 'hero', 'left'), 1200 + (i * 53) % 6000,
                   {_at('i', '5 hours')}, jsonb_build_array({_uuid('scene', _nth('p', scenes))}::text)
              FROM generate_series(1, {c['image_analyses']}) i, LATERAL (SELECT {_nth('2 * i', projects)} AS p) x''',
        f'''INSERT INTO "bazaar-vid_component_test_case" ("id", "prompt", "category", "complexity", "edgeCases",
                                                         "createdAt")
            SELECT {_uuid('test-case')}, 'Create an animated component #' || i,
                   {_pick(['animation', 'layout', 'typography', 'data-viz'], 'i')}, 1 + i % 5,
                   CASE WHEN i % 3 = 0 THEN jsonb_build_array('empty props', 'very long text') ELSE '[]'::jsonb END,
                   {_at('i', '1 hour')}
              FROM generate_series(1, {c['test_cases']}) i''',
        f'''INSERT INTO "bazaar-vid_component_evaluation_metric" ("id", "testCaseId", "timestamp", "category",
                 "complexity", "edgeCases", "success", "errorStage", "errorType", "errorMessage",
                 "promptSubmissionTime", "codeGenerationStartTime", "codeGenerationEndTime", "validationStartTime",
                 "validationEndTime", "buildStartTime", "buildEndTime", "componentCompletionTime", "timeToFirstToken",
                 "codeGenerationTime", "validationTime", "buildTime", "totalTime", "syntaxErrorCount",
                 "eslintErrorCount", "eslintWarningCount", "codeLength", "renderSuccess", "componentId",
                 "stateTransitions", "tags")
            SELECT {_uuid('evaluation')}, {_uuid('test-case', 't')}, t0 + interval '20 seconds',
                   {_pick(['animation', 'layout', 'typography', 'data-viz'], 't')}, 1 + t % 5, '[]'::jsonb,
                   i % 6 <> 0, CASE WHEN i % 6 = 0 THEN 'build' END, CASE WHEN i % 6 = 0 THEN 'SyntaxError' END,
                   CASE WHEN i % 6 = 0 THEN 'Unexpected token at line 12' END,
                   t0, t0 + interval '1 second', t0 + interval '9 seconds', t0 + interval '9 seconds',
                   t0 + interval '10 seconds', t0 + interval '10 seconds', t0 + interval '14 seconds',
                   t0 + interval '20 seconds', 600 + i % 400, 8000, 1000, 4000, 20000, (i % 6 = 0)::int, i % 3, i % 5,
                   2000 + (i * 41) % 3000, i % 6 <> 0, 'comp-' || {_md5_hex('component', 'i', 8)},
                   jsonb_build_array('submitted', 'generating', 'building', 'done'), jsonb_build_array('nightly')
              FROM generate_series(1, {c['evaluation_metrics']}) i,
                   LATERAL (SELECT {_nth('i', c['test_cases'])} AS t, {_at('i', '2 hours')} AS t0) x''',
        # the exports pair: the analytics follow them below
        f'''INSERT INTO "bazaar-vid_credit_package" ("id", "name", "credits", "price", "stripe_price_id",
                 "bonus_percentage", "popular", "active", "sort_order", "created_at")
            VALUES {", ".join(
                f"({_uuid('credit-package', str(n))}, '{name}', {credits}, {price}, "
                f"'price_' || {_md5_hex('price', str(n), 14)}, {bonus}, {str(popular).lower()}, true, {n}, "
                f"{_at(str(n), '1 minute')})"
                for n, (name, credits, price, bonus, popular) in enumerate(CREDIT_PACKAGES, 1))}''',
        f'''INSERT INTO "bazaar-vid_user_credits" ("user_id", "daily_credits", "purchased_credits", "lifetime_credits",
                 "daily_reset_at", "created_at", "updated_at")
            SELECT {_uuid('user')}::text, 150 - (i * 7) % 150, CASE WHEN i % 4 = 0 THEN 500 - (i * 11) % 400 ELSE 0 END,
                   CASE WHEN i % 4 = 0 THEN 500 ELSE 0 END, timestamptz '2025-07-28 00:00:00+00',
                   {_at('i', '1 hour')}, {_at('i', '1 hour')} + interval '100 days'
              FROM generate_series(1, {users}) i''',
        # a purchase every 8th transaction, otherwise daily grants and usage; a running-looking balance
        f'''INSERT INTO "bazaar-vid_credit_transaction" ("id", "user_id", "type", "amount", "balance", "description",
                 "metadata", "stripe_payment_intent_id", "created_at")
            SELECT {_uuid('credit-transaction')}, {_uuid('user', 'u')}::text, kind,
                   CASE kind WHEN 'purchase' THEN 500 WHEN 'daily_grant' THEN 150 WHEN 'refund' THEN 10 ELSE -10 END,
                   150 + (i * 37) % 500,
                   CASE kind WHEN 'purchase' THEN 'Purchased Creator package' WHEN 'daily_grant' THEN 'Daily credits'
                             WHEN 'refund' THEN 'Refund for a failed generation' ELSE 'Scene generation' END,
                   CASE kind WHEN 'purchase' THEN jsonb_build_object('packageId', {_uuid('credit-package', '2')}::text,
                                                                    'credits', 500)
                             WHEN 'usage' THEN jsonb_build_object('operation', 'scene_generation',
                                                                  'projectId', {project('u')}::text) END,
                   CASE WHEN kind = 'purchase' THEN 'pi_' || {_md5_hex('payment-intent', 'i', 24)} END,
                   {_at('i', '3 hours')}
              FROM generate_series(1, {c['credit_transactions']}) i,
                   LATERAL (SELECT {_nth('i', users)} AS u,
                                   CASE WHEN i % 8 = 0 THEN 'purchase' WHEN i % 8 IN (1, 5) THEN 'daily_grant'
                                        WHEN i % 16 = 7 THEN 'refund' ELSE 'usage' END AS kind) x''',
        f'''INSERT INTO "bazaar-vid_usage_limit" ("id", "limit_key", "free_tier_limit", "description", "reset_period",
                 "is_active", "created_at", "updated_at")
            VALUES {", ".join(
                f"({_uuid('usage-limit', str(n))}, '{key}', {limit}, '{description}', '{period}', true, "
                f"{_at(str(n), '1 minute')}, {_at(str(n), '1 minute')})"
                for n, (key, limit, description, period) in enumerate(USAGE_LIMITS, 1))}''',
        # (user, date) is unique per row: row i is user ((i - 1) % users) + 1 on day (i - 1) / users
        f'''INSERT INTO "bazaar-vid_user_usage" ("id", "user_id", "date", "usage_type", "count", "project_id",
                 "metadata", "created_at", "updated_at")
            SELECT {_uuid('user-usage')}, {_uuid('user', 'u')}::text, date '2025-07-01' + (i - 1) / {users},
                   {_pick(['prompts', 'exports', 'projects'], 'i')}, 1 + (i * 7) % 10,
                   CASE WHEN i % 3 <> 2 THEN {project('u')} END,
                   jsonb_build_object('source', 'chat'), day_end, day_end
              FROM generate_series(1, {c['user_usage']}) i,
                   LATERAL (SELECT {_nth('i', users)} AS u, timestamptz '2025-07-01 20:00:00+00'
                                   + ((i - 1) / {users}) * interval '1 day' AS day_end) x''',
    ]

    text_ids = base_variant(variant) == "prod"
    cast = "::text" if text_ids else ""
    exports_total = c["exports_ok"] + c["exports_orphan"]
    stmts.append(
        f'''INSERT INTO "bazaar-vid_exports" ("id", "user_id", "project_id", "render_id", "status", "progress",
                 "format", "quality", "output_url", "file_size", "duration", "error", "metadata", "download_count",
                 "last_downloaded_at", "created_at", "completed_at")
            SELECT {_uuid('export')}{cast}, {owner(_nth('i', projects))},
                   CASE WHEN i > {c['exports_ok']} THEN {_uuid('deleted-project')}
                        ELSE {project(_nth('i', projects))} END{cast},
                   'render-' || md5('render-' || i), status,
                   CASE status WHEN 'completed' THEN 100 WHEN 'pending' THEN 0 ELSE (i * 7) % 100 END,
                   {_pick(['mp4', 'webm', 'gif'], 'i')}, {_pick(['high', 'medium', 'low'], 'i')},
                   CASE WHEN status = 'completed' THEN 'https://r2.example.com/exports/' || i || '.mp4' END,
                   CASE WHEN status = 'completed' THEN 1048576 + i * 977 END, 150 + (i % 55) * 30,
                   CASE WHEN status = 'failed' THEN 'Lambda render timed out' END,
                   jsonb_build_object('fps', 30, 'width', 1920, 'height', 1080, 'codec', 'h264'),
                   CASE WHEN status = 'completed' THEN i % 9 ELSE 0 END,
                   CASE WHEN status = 'completed' AND i % 9 > 0 THEN ({_at('i', '47 minutes')} + interval '1 day')::timestamp END,
                   {_at('i', '47 minutes')}::timestamp,
                   CASE WHEN status = 'completed' THEN ({_at('i', '47 minutes')} + interval '3 minutes')::timestamp END
              FROM generate_series(1, {exports_total}) i,
                   LATERAL (SELECT {_pick(['pending', 'rendering', 'completed', 'failed'], 'i')} AS status) x''')
    # Analytics: the first analytics_ok rows spread over the non-orphan exports, then three rows per
    # orphaned export (6 at scale 1).  export_id is text in both databases: lower-case UUID strings.
    # Partitioned (prod_partitioned): the rows, orphans included, spread over the months (row i in month
    # i % (months + 1) after the first: the last group lands in the default partition).
    analytics_at = (f"({BASE_TIME} + (i % {len(ANALYTICS_MONTHS) + 1}) * interval '1 month' + i * interval '1 minute')"
                    if variant == "prod_partitioned" else _at('i', '7 minutes'))
    stmts.append(
        f'''INSERT INTO "bazaar-vid_export_analytics" ("id", "export_id", "event", "event_data", "user_agent",
                 "ip_address", "created_at")
            SELECT {_uuid('analytics')},
                   CASE WHEN i > {c['analytics_ok']}
                        THEN {_uuid('export', f"{c['exports_ok']} + 1 + ((i - {c['analytics_ok']} - 1) / 3)")}
                        ELSE {_uuid('export', _nth('i', c['exports_ok']))} END::text,
                   {_pick(['started', 'progress', 'completed', 'failed', 'downloaded', 'viewed'], 'i')},
                   jsonb_build_object('progress', (i * 13) % 100, 'step', i % 6),
                   'Mozilla/5.0 (X11; Linux x86_64) Chrome/' || (120 + i % 10) || '.0',
                   '10.' || (i % 250) || '.' || (i % 199) || '.' || (1 + i % 253),
                   {analytics_at}::timestamp
              FROM generate_series(1, {c['analytics_ok'] + c['analytics_orphan']}) i''')

    # The two usage-metric tables have the same columns (0007's camelCase); one row in ten has no project.
    def metric_insert(table: str, tag: str, n: int) -> str:
        return f'''INSERT INTO "{table}" ("id", "provider", "model", "userId", "projectId", "toolName", "success",
                 "responseTime", "tokenCount", "errorType", "errorMessage", "timestamp")
            SELECT {_uuid(tag)}, provider,
                   CASE provider WHEN 'openai' THEN {_pick(['gpt-4.1', 'gpt-4.1-mini', 'gpt-4o-mini'], 'i')}
                                 ELSE {_pick(['claude-sonnet-4-20250514', 'claude-3-5-haiku-20241022'], 'i')} END,
                   {owner('p')}, CASE WHEN i % 10 = 3 THEN NULL ELSE {project('p')} END,
                   {_pick(['addScene', 'editScene', 'deleteScene', 'brain', 'imageAnalysis'], 'i')}, i % 12 <> 0,
                   150 + (i * 53) % 9000, CASE WHEN i % 12 <> 0 THEN 200 + (i * 31) % 4000 END,
                   CASE WHEN i % 12 = 0 THEN {_pick(['rate_limit', 'timeout'], 'i / 12')} END,
                   CASE WHEN i % 12 = 0 THEN 'Request failed: ' || {_pick(['429 Too Many Requests', 'timed out'], 'i / 12')} END,
                   {_at('i', '9 minutes')}
              FROM generate_series(1, {n}) i,
                   LATERAL (SELECT {_nth('i', projects)} AS p, {_pick(['anthropic', 'openai'], 'i')} AS provider) x'''

    if c["prefixed_metric"]:
        stmts.append(metric_insert("bazaar-vid_api_usage_metric", "prefixed-metric", c["prefixed_metric"]))
    if c["old_metric"]:
        stmts.append(metric_insert("api_usage_metric", "old-metric", c["old_metric"]))
    if c["project_memory"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_project_memory" ("id", "project_id", "memory_type", "memory_key",
                 "memory_value", "confidence", "source_prompt", "created_at", "updated_at", "expires_at")
            SELECT {_uuid('memory')}, {project(_nth('i', projects))},
                   {_pick(['user_preference', 'scene_relationship', 'conversation_context'], 'i')},
                   {_pick(['duration_preference', 'style_preference', 'scene_reference', 'color_preference'], 'i')}
                       || '_' || i,
                   jsonb_build_object('value', 'remembered ' || substr(md5('memory-' || i), 1, 12))::text,
                   0.5 + (i % 50) / 100.0, 'make it ' || {_pick(['shorter', 'blue', 'like scene 2', 'punchier'], 'i')},
                   {_at('i', '23 minutes')}, {_at('i', '23 minutes')},
                   CASE WHEN i % 3 = 2 THEN {_at('i', '23 minutes')} + interval '7 days' END
              FROM generate_series(1, {c['project_memory']}) i''')
    if c["metric"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_metric" ("id", "name", "value", "tags", "timestamp")
            SELECT {_uuid('metric')}, {_pick(['render_ms', 'queue_depth', 'cache_hit'], 'i')}, (i * 3.5) % 1000,
                   jsonb_build_object('host', 'worker-' || (i % 4)), {_at('i', '41 minutes')}
              FROM generate_series(1, {c['metric']}) i''')
    if c["agent_message"]:
        stmts.append(f'''INSERT INTO "bazaar-vid_agent_message" ("id", "sender", "recipient", "type", "payload",
                 "correlation_id", "status", "createdAt", "processedAt")
            SELECT {_uuid('agent-message')}::text, 'CoordinatorAgent',
                   {_pick(['BuilderAgent', 'ErrorFixerAgent', 'R2StorageAgent'], 'i')},
                   {_pick(['CREATE_COMPONENT_REQUEST', 'COMPONENT_BUILD_ERROR', 'STORE_COMPONENT_REQUEST'], 'i')},
                   jsonb_build_object('taskId', {_uuid('job', _nth('i', jobs))}::text, 'attempt', 1),
                   {_uuid('correlation', '1')}::text, 'processed', {_at('i', '1 day')},
                   {_at('i', '1 day')} + interval '2 seconds'
              FROM generate_series(1, {c['agent_message']}) i''')
    if c.get("users_sync"):
        stmts.append(f'''INSERT INTO neon_auth.users_sync (raw_json, id, name, email, created_at)
            SELECT jsonb_build_object('id', 'neon-' || i, 'email', 'user' || i || '@example.com'), 'neon-' || i,
                   'User ' || i, 'user' || i || '@example.com', {_at('i', '1 day')}
              FROM generate_series(1, {c['users_sync']}) i''')
    return stmts


def content_hash(variant: str, scale: float = 1.0) -> str:
    """A short hash of what a seed of ``variant`` at ``scale`` holds (its DDL and data statements):
    names built from it (template databases) change whenever the fixture's content does."""
    digest = hashlib.sha256(ddl(variant).encode())
    for stmt in data_sql(variant, scale):
        digest.update(b"\0" + stmt.encode())
    return digest.hexdigest()[:10]


def _statements(text: str) -> list[str]:
    """The statements of a DDL text (split at ``;`` outside quotes, dollar quotes and comments)."""
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        if text.startswith("--", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text[i] in "'\"":
            i = text.find(text[i], i + 1)
            i = n if i < 0 else i
        elif text.startswith("$$", i):
            i = text.find("$$", i + 2) + 1
            i = n if i <= 0 else i
        elif text[i] == ";":
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    out.append(text[start:].strip())
    return [stmt for stmt in out if stmt and not all(
        line.strip().startswith("--") or not line.strip() for line in stmt.splitlines())]


def _deferrable(stmt: str) -> bool:
    """Secondary indexes and foreign keys: built after the data (one pass each instead of per row)."""
    body = "\n".join(line for line in stmt.splitlines() if not line.strip().startswith("--")).strip()
    return body.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX")) or (
        body.startswith("ALTER TABLE") and "FOREIGN KEY" in body)


def seed(conn, variant: str, scale: float = 1.0) -> None:
    """Create the ``variant`` schema and its data in the (empty) database of ``conn``, then ANALYZE.

    One transaction: the tables, the data, then the secondary indexes and foreign keys of ``ddl(variant)``
    in their order (the same catalog as running the DDL first, built faster; every FK is validated).
    """
    statements = _statements(ddl(variant))
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cur.execute(";\n".join(stmt for stmt in statements if not _deferrable(stmt)))
        for stmt in data_sql(variant, scale):
            cur.execute(stmt)
        cur.execute(";\n".join(stmt for stmt in statements if _deferrable(stmt)))
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sprint 90 fixture schemas and data")
    sub = parser.add_subparsers(dest="command", required=True)
    ddl_parser = sub.add_parser("ddl")
    ddl_parser.add_argument("variant", choices=["reference", "prod", "prod_partitioned", "dev"])
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("variant", choices=["prod", "prod_partitioned", "dev"])
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
