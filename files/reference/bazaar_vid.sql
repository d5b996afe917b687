-- Reference schema for bazaar-vid: what the application CODE declared during Sprint 90.
--
-- Source: src/server/db/schema.ts of Lysaker1/bazaar-vid as of 2025-07-27 (the schema the code ran
-- with while Sprint 90 ran; copied to shared/app/code-schema-before-sprint90.ts). Drizzle ORM,
-- pgTableCreator with the table prefix "bazaar-vid_", 30 createTable calls, no pgEnum.
-- Rendered as `drizzle-kit export` prints it: CREATE TABLEs, then foreign keys, then indexes (the
-- same schema as the app's migrations 0000-0006 plus api_usage_metric of 0007, with the columns in
-- declaration order). It is the code's declaration, not what any database holds: prod lacked or
-- differed on part of it (e.g. project.audio, message_project_sequence_idx).
-- Drizzle names: composite primary keys <table>_<cols>_pk, .unique() <table>_<column>_unique,
-- foreign keys <table>_<column>_<reftable>_<refcolumn>_fk (PostgreSQL truncates names longer than
-- 63 bytes, with a NOTICE; drizzle-kit's own migrations get the same truncated names).
-- uniqueIndex() is a UNIQUE INDEX, not a constraint. Not here: the raw sql`` snippets the file also
-- exports (idx_agent_messages_task_id, ADD COLUMN IF NOT EXISTS ...): drizzle-kit does not run them.
--
-- Regenerating a reference for your own app: any SQL DDL of the schema the code wants will do.
--   Drizzle:  npx drizzle-kit export > reference.sql
--             (or drizzle-kit generate against an empty database and concatenate the migrations);
--   other:    pg_dump --schema-only of a scratch database migrated by the app's own migrations.
-- Loads into an empty PostgreSQL >= 13 database (gen_random_uuid() is built in):
--   psql -v ON_ERROR_STOP=1 -1 -f files/reference/bazaar_vid.sql
CREATE TABLE "bazaar-vid_account" (
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
	CONSTRAINT "bazaar-vid_account_provider_providerAccountId_pk" PRIMARY KEY("provider","providerAccountId")
);
CREATE TABLE "bazaar-vid_agent_message" (
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
CREATE TABLE "bazaar-vid_animation_design_brief" (
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
CREATE TABLE "bazaar-vid_api_usage_metric" (
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
	"timestamp" timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE "bazaar-vid_component_error" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"jobId" uuid NOT NULL,
	"errorType" varchar(100) NOT NULL,
	"details" text NOT NULL,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE "bazaar-vid_component_evaluation_metric" (
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
CREATE TABLE "bazaar-vid_component_test_case" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"prompt" text NOT NULL,
	"category" varchar(50) NOT NULL,
	"complexity" integer NOT NULL,
	"edgeCases" jsonb DEFAULT '[]'::jsonb,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
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
CREATE TABLE "bazaar-vid_custom_component_job" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"projectId" uuid NOT NULL,
	"effect" text NOT NULL,
	"tsxCode" text,
	"metadata" jsonb,
	"statusMessageId" uuid,
	"status" varchar(50) DEFAULT 'pending' NOT NULL,
	"outputUrl" text,
	"errorMessage" text,
	"retryCount" integer DEFAULT 0 NOT NULL,
	"last_successful_step" varchar(50),
	"next_retry_at" timestamp with time zone,
	"error_context" jsonb,
	"checkpoint_data" jsonb,
	"last_step" varchar(50),
	"task_id" text,
	"internal_status" varchar(50),
	"requires_input" boolean DEFAULT false,
	"input_type" text,
	"task_state" jsonb,
	"artifacts" jsonb,
	"history" jsonb,
	"sse_enabled" boolean DEFAULT false,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
	"updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
	"originalTsxCode" text,
	"lastFixAttempt" timestamp with time zone,
	"fixIssues" text
);
CREATE TABLE "bazaar-vid_email_subscriber" (
	"id" text PRIMARY KEY NOT NULL,
	"email" text NOT NULL,
	"subscribed_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"source" text DEFAULT 'homepage' NOT NULL,
	"user_id" varchar(255),
	CONSTRAINT "bazaar-vid_email_subscriber_email_unique" UNIQUE("email")
);
CREATE TABLE "bazaar-vid_export_analytics" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"export_id" uuid NOT NULL,
	"event" text NOT NULL,
	"event_data" jsonb,
	"user_agent" text,
	"ip_address" text,
	"created_at" timestamp DEFAULT now() NOT NULL
);
CREATE TABLE "bazaar-vid_exports" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" varchar(255) NOT NULL,
	"project_id" uuid NOT NULL,
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
);
CREATE TABLE "bazaar-vid_feedback" (
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
CREATE TABLE "bazaar-vid_image_analysis" (
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
CREATE TABLE "bazaar-vid_message" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"projectId" uuid NOT NULL,
	"content" text NOT NULL,
	"role" varchar(50) NOT NULL,
	"kind" varchar(50) DEFAULT 'message' NOT NULL,
	"status" varchar(50),
	"image_urls" jsonb,
	"sequence" integer DEFAULT 0 NOT NULL,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
	"updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
	"originalTsxCode" text,
	"lastFixAttempt" timestamp with time zone,
	"fixIssues" text
);
CREATE TABLE "bazaar-vid_metric" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" varchar(100) NOT NULL,
	"value" real NOT NULL,
	"tags" jsonb,
	"timestamp" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE "bazaar-vid_patch" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"projectId" uuid NOT NULL,
	"patch" jsonb NOT NULL,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE "bazaar-vid_project_memory" (
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
CREATE TABLE "bazaar-vid_project" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"userId" varchar(255) NOT NULL,
	"title" varchar(255) NOT NULL,
	"props" jsonb NOT NULL,
	"audio" jsonb,
	"isWelcome" boolean DEFAULT true NOT NULL,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
	"updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE "bazaar-vid_scene_iteration" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"scene_id" uuid NOT NULL,
	"project_id" uuid NOT NULL,
	"operation_type" varchar(50) NOT NULL,
	"edit_complexity" varchar(20),
	"user_prompt" text NOT NULL,
	"brain_reasoning" text,
	"tool_reasoning" text,
	"code_before" text,
	"code_after" text,
	"changes_applied" jsonb,
	"changes_preserved" jsonb,
	"generation_time_ms" integer,
	"model_used" varchar(50),
	"temperature" real,
	"tokens_used" integer,
	"user_edited_again" boolean DEFAULT false,
	"user_satisfaction_score" integer,
	"session_id" varchar(255),
	"changeSource" varchar(50) DEFAULT 'llm' NOT NULL,
	"message_id" uuid,
	"created_at" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE "bazaar-vid_scene_plan" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"projectId" uuid NOT NULL,
	"messageId" uuid,
	"rawReasoning" text NOT NULL,
	"planData" jsonb NOT NULL,
	"userPrompt" text NOT NULL,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE "bazaar-vid_scene_specs" (
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
CREATE TABLE "bazaar-vid_scene" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"projectId" uuid NOT NULL,
	"order" integer DEFAULT 0 NOT NULL,
	"name" varchar(255) DEFAULT 'Scene' NOT NULL,
	"tsxCode" text NOT NULL,
	"props" jsonb,
	"duration" integer DEFAULT 150 NOT NULL,
	"publishedUrl" text,
	"publishedHash" text,
	"publishedAt" timestamp with time zone,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
	"updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
	"layout_json" text,
	"slug" varchar(255),
	"dominantColors" jsonb,
	"firstH1Text" text,
	"lastFocused" boolean DEFAULT false
);
CREATE TABLE "bazaar-vid_shared_video" (
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
CREATE TABLE "bazaar-vid_user_credits" (
	"user_id" varchar(255) PRIMARY KEY NOT NULL,
	"daily_credits" integer DEFAULT 150 NOT NULL,
	"purchased_credits" integer DEFAULT 0 NOT NULL,
	"lifetime_credits" integer DEFAULT 0 NOT NULL,
	"daily_reset_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
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
CREATE TABLE "bazaar-vid_user" (
	"id" varchar(255) PRIMARY KEY NOT NULL,
	"name" varchar(255),
	"email" varchar(255) NOT NULL,
	"emailVerified" timestamp with time zone,
	"image" text,
	"isAdmin" boolean DEFAULT false NOT NULL,
	"stripe_customer_id" text,
	"createdAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
	"updatedAt" timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
	CONSTRAINT "bazaar-vid_user_stripe_customer_id_unique" UNIQUE("stripe_customer_id")
);
CREATE TABLE "bazaar-vid_verificationToken" (
	"identifier" varchar(255) NOT NULL,
	"token" varchar(255) NOT NULL,
	"expires" timestamp with time zone NOT NULL,
	CONSTRAINT "bazaar-vid_verificationToken_identifier_token_pk" PRIMARY KEY("identifier","token")
);
ALTER TABLE "bazaar-vid_account" ADD CONSTRAINT "bazaar-vid_account_userId_bazaar-vid_user_id_fk" FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_animation_design_brief" ADD CONSTRAINT "bazaar-vid_animation_design_brief_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_animation_design_brief" ADD CONSTRAINT "bazaar-vid_animation_design_brief_componentJobId_bazaar-vid_custom_component_job_id_fk" FOREIGN KEY ("componentJobId") REFERENCES "public"."bazaar-vid_custom_component_job"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_api_usage_metric" ADD CONSTRAINT "bazaar-vid_api_usage_metric_userId_bazaar-vid_user_id_fk" FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_api_usage_metric" ADD CONSTRAINT "bazaar-vid_api_usage_metric_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_component_error" ADD CONSTRAINT "bazaar-vid_component_error_jobId_bazaar-vid_custom_component_job_id_fk" FOREIGN KEY ("jobId") REFERENCES "public"."bazaar-vid_custom_component_job"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_component_evaluation_metric" ADD CONSTRAINT "bazaar-vid_component_evaluation_metric_testCaseId_bazaar-vid_component_test_case_id_fk" FOREIGN KEY ("testCaseId") REFERENCES "public"."bazaar-vid_component_test_case"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_credit_transaction" ADD CONSTRAINT "bazaar-vid_credit_transaction_user_id_bazaar-vid_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_custom_component_job" ADD CONSTRAINT "bazaar-vid_custom_component_job_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_custom_component_job" ADD CONSTRAINT "bazaar-vid_custom_component_job_statusMessageId_bazaar-vid_message_id_fk" FOREIGN KEY ("statusMessageId") REFERENCES "public"."bazaar-vid_message"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_email_subscriber" ADD CONSTRAINT "bazaar-vid_email_subscriber_user_id_bazaar-vid_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE set null ON UPDATE no action;
ALTER TABLE "bazaar-vid_export_analytics" ADD CONSTRAINT "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk" FOREIGN KEY ("export_id") REFERENCES "public"."bazaar-vid_exports"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_exports" ADD CONSTRAINT "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_exports" ADD CONSTRAINT "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_feedback" ADD CONSTRAINT "bazaar-vid_feedback_user_id_bazaar-vid_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE set null ON UPDATE no action;
ALTER TABLE "bazaar-vid_image_analysis" ADD CONSTRAINT "bazaar-vid_image_analysis_project_id_bazaar-vid_project_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_message" ADD CONSTRAINT "bazaar-vid_message_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_patch" ADD CONSTRAINT "bazaar-vid_patch_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_project_memory" ADD CONSTRAINT "bazaar-vid_project_memory_project_id_bazaar-vid_project_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_project" ADD CONSTRAINT "bazaar-vid_project_userId_bazaar-vid_user_id_fk" FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_iteration" ADD CONSTRAINT "bazaar-vid_scene_iteration_scene_id_bazaar-vid_scene_id_fk" FOREIGN KEY ("scene_id") REFERENCES "public"."bazaar-vid_scene"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_iteration" ADD CONSTRAINT "bazaar-vid_scene_iteration_project_id_bazaar-vid_project_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_iteration" ADD CONSTRAINT "bazaar-vid_scene_iteration_message_id_bazaar-vid_message_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."bazaar-vid_message"("id") ON DELETE set null ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_plan" ADD CONSTRAINT "bazaar-vid_scene_plan_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_plan" ADD CONSTRAINT "bazaar-vid_scene_plan_messageId_bazaar-vid_message_id_fk" FOREIGN KEY ("messageId") REFERENCES "public"."bazaar-vid_message"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_specs" ADD CONSTRAINT "bazaar-vid_scene_specs_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene_specs" ADD CONSTRAINT "bazaar-vid_scene_specs_createdBy_bazaar-vid_user_id_fk" FOREIGN KEY ("createdBy") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE no action ON UPDATE no action;
ALTER TABLE "bazaar-vid_scene" ADD CONSTRAINT "bazaar-vid_scene_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_shared_video" ADD CONSTRAINT "bazaar-vid_shared_video_projectId_bazaar-vid_project_id_fk" FOREIGN KEY ("projectId") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_shared_video" ADD CONSTRAINT "bazaar-vid_shared_video_userId_bazaar-vid_user_id_fk" FOREIGN KEY ("userId") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_user_credits" ADD CONSTRAINT "bazaar-vid_user_credits_user_id_bazaar-vid_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_user_usage" ADD CONSTRAINT "bazaar-vid_user_usage_user_id_bazaar-vid_user_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."bazaar-vid_user"("id") ON DELETE cascade ON UPDATE no action;
ALTER TABLE "bazaar-vid_user_usage" ADD CONSTRAINT "bazaar-vid_user_usage_project_id_bazaar-vid_project_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."bazaar-vid_project"("id") ON DELETE set null ON UPDATE no action;
CREATE INDEX "account_user_id_idx" ON "bazaar-vid_account" USING btree ("userId");
CREATE INDEX "agent_message_correlation_id_idx" ON "bazaar-vid_agent_message" USING btree ("correlation_id");
CREATE INDEX "agent_message_type_idx" ON "bazaar-vid_agent_message" USING btree ("type");
CREATE INDEX "agent_message_sender_idx" ON "bazaar-vid_agent_message" USING btree ("sender");
CREATE INDEX "agent_message_recipient_idx" ON "bazaar-vid_agent_message" USING btree ("recipient");
CREATE INDEX "animation_design_brief_project_idx" ON "bazaar-vid_animation_design_brief" USING btree ("projectId");
CREATE INDEX "animation_design_brief_scene_idx" ON "bazaar-vid_animation_design_brief" USING btree ("sceneId");
CREATE INDEX "animation_design_brief_component_idx" ON "bazaar-vid_animation_design_brief" USING btree ("componentJobId");
CREATE INDEX "api_metrics_timestamp_idx" ON "bazaar-vid_api_usage_metric" USING btree ("timestamp");
CREATE INDEX "api_metrics_provider_idx" ON "bazaar-vid_api_usage_metric" USING btree ("provider");
CREATE INDEX "api_metrics_user_idx" ON "bazaar-vid_api_usage_metric" USING btree ("userId");
CREATE INDEX "api_metrics_success_idx" ON "bazaar-vid_api_usage_metric" USING btree ("success");
CREATE INDEX "api_metrics_composite_idx" ON "bazaar-vid_api_usage_metric" USING btree ("provider","timestamp","success");
CREATE INDEX "component_error_job_idx" ON "bazaar-vid_component_error" USING btree ("jobId");
CREATE INDEX "component_evaluation_metrics_test_case_id_idx" ON "bazaar-vid_component_evaluation_metric" USING btree ("testCaseId");
CREATE INDEX "component_evaluation_metrics_success_idx" ON "bazaar-vid_component_evaluation_metric" USING btree ("success");
CREATE INDEX "component_evaluation_metrics_timestamp_idx" ON "bazaar-vid_component_evaluation_metric" USING btree ("timestamp");
CREATE INDEX "component_evaluation_metrics_category_idx" ON "bazaar-vid_component_evaluation_metric" USING btree ("category");
CREATE INDEX "component_test_cases_category_idx" ON "bazaar-vid_component_test_case" USING btree ("category");
CREATE INDEX "credit_packages_active_idx" ON "bazaar-vid_credit_package" USING btree ("active");
CREATE INDEX "credit_packages_sort_idx" ON "bazaar-vid_credit_package" USING btree ("sort_order");
CREATE INDEX "credit_transactions_user_idx" ON "bazaar-vid_credit_transaction" USING btree ("user_id");
CREATE INDEX "credit_transactions_type_idx" ON "bazaar-vid_credit_transaction" USING btree ("type");
CREATE INDEX "credit_transactions_created_idx" ON "bazaar-vid_credit_transaction" USING btree ("created_at");
CREATE INDEX "credit_transactions_stripe_idx" ON "bazaar-vid_credit_transaction" USING btree ("stripe_payment_intent_id");
CREATE INDEX "custom_component_job_project_idx" ON "bazaar-vid_custom_component_job" USING btree ("projectId");
CREATE INDEX "custom_component_job_status_idx" ON "bazaar-vid_custom_component_job" USING btree ("status");
CREATE INDEX "custom_component_job_task_id_idx" ON "bazaar-vid_custom_component_job" USING btree ("task_id");
CREATE INDEX "email_subscriber_email_idx" ON "bazaar-vid_email_subscriber" USING btree ("email");
CREATE INDEX "email_subscriber_status_idx" ON "bazaar-vid_email_subscriber" USING btree ("status");
CREATE INDEX "email_subscriber_subscribed_at_idx" ON "bazaar-vid_email_subscriber" USING btree ("subscribed_at");
CREATE INDEX "export_analytics_export_idx" ON "bazaar-vid_export_analytics" USING btree ("export_id");
CREATE INDEX "export_analytics_event_idx" ON "bazaar-vid_export_analytics" USING btree ("event");
CREATE INDEX "export_analytics_created_idx" ON "bazaar-vid_export_analytics" USING btree ("created_at");
CREATE INDEX "exports_user_idx" ON "bazaar-vid_exports" USING btree ("user_id");
CREATE INDEX "exports_project_idx" ON "bazaar-vid_exports" USING btree ("project_id");
CREATE INDEX "exports_render_idx" ON "bazaar-vid_exports" USING btree ("render_id");
CREATE INDEX "exports_created_idx" ON "bazaar-vid_exports" USING btree ("created_at");
CREATE INDEX "feedback_user_idx" ON "bazaar-vid_feedback" USING btree ("user_id");
CREATE INDEX "feedback_status_idx" ON "bazaar-vid_feedback" USING btree ("status");
CREATE INDEX "feedback_created_at_idx" ON "bazaar-vid_feedback" USING btree ("created_at");
CREATE INDEX "image_analysis_project_idx" ON "bazaar-vid_image_analysis" USING btree ("project_id");
CREATE INDEX "image_analysis_trace_idx" ON "bazaar-vid_image_analysis" USING btree ("trace_id");
CREATE INDEX "image_analysis_created_idx" ON "bazaar-vid_image_analysis" USING btree ("created_at");
CREATE INDEX "message_project_idx" ON "bazaar-vid_message" USING btree ("projectId");
CREATE INDEX "message_status_idx" ON "bazaar-vid_message" USING btree ("status");
CREATE INDEX "message_project_sequence_idx" ON "bazaar-vid_message" USING btree ("projectId","sequence");
CREATE INDEX "patch_project_idx" ON "bazaar-vid_patch" USING btree ("projectId");
CREATE INDEX "project_memory_project_idx" ON "bazaar-vid_project_memory" USING btree ("project_id");
CREATE INDEX "project_memory_type_key_idx" ON "bazaar-vid_project_memory" USING btree ("memory_type","memory_key");
CREATE INDEX "project_user_idx" ON "bazaar-vid_project" USING btree ("userId");
CREATE INDEX "project_title_idx" ON "bazaar-vid_project" USING btree ("title");
CREATE UNIQUE INDEX "project_unique_name" ON "bazaar-vid_project" USING btree ("userId","title");
CREATE INDEX "scene_iteration_scene_idx" ON "bazaar-vid_scene_iteration" USING btree ("scene_id");
CREATE INDEX "scene_iteration_project_idx" ON "bazaar-vid_scene_iteration" USING btree ("project_id");
CREATE INDEX "scene_iteration_operation_idx" ON "bazaar-vid_scene_iteration" USING btree ("operation_type","edit_complexity");
CREATE INDEX "scene_iteration_satisfaction_idx" ON "bazaar-vid_scene_iteration" USING btree ("user_edited_again","created_at");
CREATE INDEX "scene_iteration_message_idx" ON "bazaar-vid_scene_iteration" USING btree ("message_id");
CREATE INDEX "scene_plan_project_idx" ON "bazaar-vid_scene_plan" USING btree ("projectId");
CREATE INDEX "scene_spec_project_idx" ON "bazaar-vid_scene_specs" USING btree ("projectId");
CREATE INDEX "scene_spec_created_at_idx" ON "bazaar-vid_scene_specs" USING btree ("createdAt");
CREATE INDEX "scene_spec_scene_id_idx" ON "bazaar-vid_scene_specs" USING btree ("sceneId");
CREATE UNIQUE INDEX "scene_spec_unique_scene_id" ON "bazaar-vid_scene_specs" USING btree ("projectId","sceneId");
CREATE INDEX "scene_spec_spec_gin_idx" ON "bazaar-vid_scene_specs" USING gin ("spec");
CREATE INDEX "scene_project_idx" ON "bazaar-vid_scene" USING btree ("projectId");
CREATE INDEX "scene_order_idx" ON "bazaar-vid_scene" USING btree ("projectId","order");
CREATE INDEX "scene_publish_idx" ON "bazaar-vid_scene" USING btree ("projectId","publishedHash");
CREATE INDEX "usage_limits_active_idx" ON "bazaar-vid_usage_limit" USING btree ("is_active");
CREATE INDEX "usage_limits_reset_period_idx" ON "bazaar-vid_usage_limit" USING btree ("reset_period");
CREATE INDEX "user_credits_daily_reset_idx" ON "bazaar-vid_user_credits" USING btree ("daily_reset_at");
CREATE INDEX "user_usage_user_date_idx" ON "bazaar-vid_user_usage" USING btree ("user_id","date");
CREATE INDEX "user_usage_type_idx" ON "bazaar-vid_user_usage" USING btree ("usage_type");
CREATE INDEX "user_usage_project_idx" ON "bazaar-vid_user_usage" USING btree ("project_id");
CREATE UNIQUE INDEX "user_usage_unique_idx" ON "bazaar-vid_user_usage" USING btree ("user_id","date","usage_type");
