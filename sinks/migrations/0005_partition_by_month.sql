-- Partition the journey tables by month of their row time, so that a dashboard's time
-- range reads the months it covers instead of the whole table (issue 17):
--
--   appointment_journeys  toYYYYMM(ifNull(scheduled_start, first_event_at))
--   stage_intervals       toYYYYMM(started_at)
--   queue_waits           toYYYYMM(started_at)
--   friction_events       toYYYYMM(occurred_at)
--   patient_visits        toYYYYMM(visit_at)
--   site_hourly           toYYYYMM(hour)
--
-- The sorting keys stay the row identities: a ReplacingMergeTree replaces rows of equal
-- sorting key, so a time column in it would keep two versions of one key whenever the
-- time moved (a reschedule within the month). The month is the only time a key keeps
-- between versions until it moves; when it does, the writer puts an `is_deleted`
-- tombstone in the old partition (sinks/placement.py). Every partition is then right
-- on its own, which is what lets a reader set `do_not_merge_across_partitions_select_final = 1`
-- (FINAL merges, and prunes, per partition). appointment_journeys gains `is_deleted`
-- for that tombstone; the journey core's rows never set it (the writer fills 0).
--
-- Where each key's newest row is, the writer reads from `row_placements`: one narrow row
-- per key, sorted by appointment id (patient key for patient_visits) and NOT partitioned,
-- so looking up a batch's keys reads their granules only, however many months the
-- tables hold (in the partitioned tables every month partition would be searched).
--
-- Each table is rebuilt (an engine's partition key cannot be altered) from its FINAL
-- rows: one row per key, deleted keys left out, so no older version of a key is carried
-- into another partition than its live row. Then the rebuilt table is swapped in
-- atomically and the old one dropped. `CREATE TABLE ... AS` keeps the columns and their
-- comments (0002's site_hourly comments included).

ALTER TABLE {db}.appointment_journeys
    ADD COLUMN IF NOT EXISTS is_deleted UInt8 DEFAULT 0
    COMMENT '1 on the tombstone the writer leaves in the old month when a journey moves month'
    AFTER version;

CREATE TABLE IF NOT EXISTS {db}.appointment_journeys_next AS {db}.appointment_journeys
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(ifNull(scheduled_start, first_event_at))
ORDER BY appointment_id;

INSERT INTO {db}.appointment_journeys_next SELECT * FROM {db}.appointment_journeys FINAL;

EXCHANGE TABLES {db}.appointment_journeys AND {db}.appointment_journeys_next;

DROP TABLE IF EXISTS {db}.appointment_journeys_next;

CREATE TABLE IF NOT EXISTS {db}.stage_intervals_next AS {db}.stage_intervals
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(started_at)
ORDER BY (appointment_id, stage);

INSERT INTO {db}.stage_intervals_next SELECT * FROM {db}.stage_intervals FINAL;

EXCHANGE TABLES {db}.stage_intervals AND {db}.stage_intervals_next;

DROP TABLE IF EXISTS {db}.stage_intervals_next;

CREATE TABLE IF NOT EXISTS {db}.queue_waits_next AS {db}.queue_waits
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(started_at)
ORDER BY (appointment_id, queue, wait_key);

INSERT INTO {db}.queue_waits_next SELECT * FROM {db}.queue_waits FINAL;

EXCHANGE TABLES {db}.queue_waits AND {db}.queue_waits_next;

DROP TABLE IF EXISTS {db}.queue_waits_next;

CREATE TABLE IF NOT EXISTS {db}.friction_events_next AS {db}.friction_events
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (appointment_id, rule, hit_key);

INSERT INTO {db}.friction_events_next SELECT * FROM {db}.friction_events FINAL;

EXCHANGE TABLES {db}.friction_events AND {db}.friction_events_next;

DROP TABLE IF EXISTS {db}.friction_events_next;

CREATE TABLE IF NOT EXISTS {db}.patient_visits_next AS {db}.patient_visits
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(visit_at)
ORDER BY (patient_key, appointment_id);

INSERT INTO {db}.patient_visits_next SELECT * FROM {db}.patient_visits FINAL;

EXCHANGE TABLES {db}.patient_visits AND {db}.patient_visits_next;

DROP TABLE IF EXISTS {db}.patient_visits_next;

-- The hour is part of the key: a bucket never changes partition.
CREATE TABLE IF NOT EXISTS {db}.site_hourly_next AS {db}.site_hourly
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, department, hour);

INSERT INTO {db}.site_hourly_next SELECT * FROM {db}.site_hourly FINAL;

EXCHANGE TABLES {db}.site_hourly AND {db}.site_hourly_next;

DROP TABLE IF EXISTS {db}.site_hourly_next;

CREATE TABLE IF NOT EXISTS {db}.row_placements
(
    lookup          String COMMENT 'the first key column: appointment_id (patient_key for patient_visits)',
    `table`         LowCardinality(String),
    key             Array(String) COMMENT 'the other key columns, in key order',
    version         UInt64 COMMENT 'of the key''s newest row',
    is_deleted      UInt8 COMMENT '1: the newest row is a tombstone',
    placed_at       Nullable(DateTime64(3, 'UTC')) COMMENT 'the first partition column of that row',
    placed_at_else  Nullable(DateTime64(3, 'UTC')) COMMENT 'the second (first_event_at of a journey), else NULL',
    site_id         LowCardinality(String) COMMENT 'of that row: the site_hourly bucket a journey leaves',
    department      LowCardinality(String)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (lookup, `table`, key)
SETTINGS index_granularity = 1024;

INSERT INTO {db}.row_placements
SELECT appointment_id, 'appointment_journeys', [], version, 0, scheduled_start, first_event_at, site_id, department
FROM {db}.appointment_journeys FINAL;

INSERT INTO {db}.row_placements
SELECT appointment_id, 'stage_intervals', [toString(stage)], version, 0, started_at, NULL, site_id, department
FROM {db}.stage_intervals FINAL;

INSERT INTO {db}.row_placements
SELECT appointment_id, 'queue_waits', [toString(queue), wait_key], version, 0, started_at, NULL, site_id, department
FROM {db}.queue_waits FINAL;

INSERT INTO {db}.row_placements
SELECT appointment_id, 'friction_events', [toString(rule), hit_key], version, 0, occurred_at, NULL, site_id, department
FROM {db}.friction_events FINAL;

INSERT INTO {db}.row_placements
SELECT patient_key, 'patient_visits', [appointment_id], version, 0, visit_at, NULL, site_id, department
FROM {db}.patient_visits FINAL;
