-- Two small tables kept by materialized views, for what the dashboards otherwise read a
-- whole big table for (issue 17; the panels that read them are dashboards' business):
--
-- journey_dimensions: every (site, department, provider) a journey row was written with.
--   The $site / $department / $provider variables list DISTINCT values of
--   appointment_journeys, a scan of the whole table on every dashboard load (380-460 ms
--   on 10 M journeys); this table holds a few hundred rows. Like that scan it lists what
--   any written version had; the writer's move tombstones (is_deleted) are left out.
-- connection_issues: the `connection.issue` events with their kind and role taken out of
--   `fields`, keyed, versioned and partitioned as `events` (a copy replaces a copy the
--   same way). "Connection issues by kind" otherwise reads every event of its months.
--
-- Both are filled from the rows already there, then by their views on every insert.

CREATE TABLE IF NOT EXISTS {db}.journey_dimensions
(
    site_id     LowCardinality(String),
    department  LowCardinality(String),
    provider_id String COMMENT 'empty for a journey without a provider'
)
ENGINE = ReplacingMergeTree
ORDER BY (site_id, department, provider_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.journey_dimensions_mv TO {db}.journey_dimensions AS
SELECT DISTINCT site_id, department, ifNull(provider_id, '') AS provider_id
FROM {db}.appointment_journeys
WHERE is_deleted = 0;

INSERT INTO {db}.journey_dimensions
SELECT DISTINCT site_id, department, ifNull(provider_id, '') FROM {db}.appointment_journeys WHERE is_deleted = 0;

CREATE TABLE IF NOT EXISTS {db}.connection_issues
(
    source          LowCardinality(String),
    event_id        String,
    occurred_at     DateTime64(3, 'UTC'),
    appointment_id  String,
    site_id         LowCardinality(String),
    department      LowCardinality(String),
    provider_id     Nullable(String),
    kind            LowCardinality(String) COMMENT 'fields.kind: audio, video, network',
    role            LowCardinality(String) COMMENT 'fields.role: patient or provider',
    copy_rank       UInt64 COMMENT 'as in events: which copy of an event wins'
)
ENGINE = ReplacingMergeTree(copy_rank)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (source, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.connection_issues_mv TO {db}.connection_issues AS
SELECT source, event_id, occurred_at, appointment_id, site_id, department, provider_id,
       JSONExtractString(fields, 'kind') AS kind, JSONExtractString(fields, 'role') AS role, copy_rank
FROM {db}.events
WHERE event_type = 'connection.issue';

INSERT INTO {db}.connection_issues
SELECT source, event_id, occurred_at, appointment_id, site_id, department, provider_id,
       JSONExtractString(fields, 'kind'), JSONExtractString(fields, 'role'), copy_rank
FROM {db}.events
WHERE event_type = 'connection.issue';
