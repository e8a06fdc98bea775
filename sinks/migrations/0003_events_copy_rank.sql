-- Of two copies of one event (same source and event_id, different payloads) the table
-- keeps the one the journey keeps, whatever order they arrived in: the version of the
-- ReplacingMergeTree becomes `copy_rank` (journey.facts.copy_rank: larger for the copy
-- with the smaller digest) instead of the arrival time. Rows carried over get rank 0, so
-- any copy written from now on replaces them. The table is rebuilt (an engine's version
-- column cannot be altered) and swapped in atomically.

CREATE TABLE IF NOT EXISTS {db}.events_next
(
    source          LowCardinality(String),
    event_id        String,
    event_type      LowCardinality(String),
    family          LowCardinality(String),
    occurred_at     DateTime64(3, 'UTC'),
    appointment_id  String,
    patient_key     String,
    site_id         LowCardinality(String),
    department      LowCardinality(String),
    provider_id     Nullable(String),
    fields          String COMMENT 'family fields and allow-listed attributes, JSON',
    topic           LowCardinality(String),
    partition       UInt32,
    offset          UInt64,
    ingested_at     DateTime64(3, 'UTC'),
    copy_rank       UInt64 COMMENT 'which copy of an event wins (journey.facts.copy_rank); 0 for rows written before'
)
ENGINE = ReplacingMergeTree(copy_rank)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (source, event_id);

INSERT INTO {db}.events_next
SELECT source, event_id, event_type, family, occurred_at, appointment_id, patient_key, site_id, department,
       provider_id, fields, topic, partition, offset, ingested_at, 0
FROM {db}.events;

EXCHANGE TABLES {db}.events AND {db}.events_next;

DROP TABLE IF EXISTS {db}.events_next;
