-- Initial tables. `{db}` is replaced by the configured database name.
-- Every table is a ReplacingMergeTree keyed so that a redelivered row replaces itself:
-- read with FINAL (or argMax by version) to see one row per key.

CREATE TABLE IF NOT EXISTS {db}.events
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
    ingested_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (source, event_id);

CREATE TABLE IF NOT EXISTS {db}.deadletters
(
    topic       LowCardinality(String),
    partition   UInt32,
    offset      UInt64,
    reason      LowCardinality(String),
    detail      String COMMENT 'names the field; never the payload (it may hold PHI)',
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (topic, partition, offset);

CREATE TABLE IF NOT EXISTS {db}.appointment_journeys
(
    appointment_id            String,
    version                   UInt64,
    patient_key               String,
    site_id                   LowCardinality(String),
    department                LowCardinality(String),
    provider_id               Nullable(String),
    modality                  LowCardinality(Nullable(String)),
    visit_type                LowCardinality(Nullable(String)),
    scheduled_start           Nullable(DateTime64(3, 'UTC')),
    duration_min              Nullable(UInt32),
    booked_at                 Nullable(DateTime64(3, 'UTC')),
    status                    LowCardinality(String),
    lead_time_days            Nullable(Float64),
    reschedule_count          UInt32,
    late_cancelled            Nullable(UInt8),
    cancelled_by              LowCardinality(Nullable(String)),
    cancelled_at              Nullable(DateTime64(3, 'UTC')),
    no_show                   UInt8,
    arrived_at                Nullable(DateTime64(3, 'UTC')),
    checked_in_at             Nullable(DateTime64(3, 'UTC')),
    checkin_channel           LowCardinality(Nullable(String)),
    roomed_at                 Nullable(DateTime64(3, 'UTC')),
    provider_started_at       Nullable(DateTime64(3, 'UTC')),
    checked_out_at            Nullable(DateTime64(3, 'UTC')),
    left_without_being_seen_at Nullable(DateTime64(3, 'UTC')),
    arrival_offset_min        Nullable(Float64),
    arrival_to_checkin_min    Nullable(Float64),
    lobby_wait_min            Nullable(Float64),
    room_wait_min             Nullable(Float64),
    checkin_to_provider_min   Nullable(Float64),
    provider_start_delay_min  Nullable(Float64),
    cycle_time_min            Nullable(Float64),
    queue_wait_min            Map(String, Float64),
    queue_abandoned           Map(String, UInt32),
    wait_estimate_error_min   Nullable(Float64),
    patient_joined_at         Nullable(DateTime64(3, 'UTC')),
    provider_joined_at        Nullable(DateTime64(3, 'UTC')),
    patient_join_offset_min   Nullable(Float64),
    provider_join_offset_min  Nullable(Float64),
    virtual_wait_min          Nullable(Float64),
    telehealth_connected      Nullable(UInt8),
    telehealth_abandoned      Nullable(UInt8),
    drop_count                UInt32,
    connection_issue_count    UInt32,
    reminders_sent            UInt32,
    friction_count            UInt32,
    friction_rules            Array(LowCardinality(String)),
    event_count               UInt32,
    first_event_at            DateTime64(3, 'UTC'),
    last_event_at             DateTime64(3, 'UTC'),
    is_final                  UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY appointment_id;

CREATE TABLE IF NOT EXISTS {db}.stage_intervals
(
    appointment_id  String,
    stage           LowCardinality(String) COMMENT 'arrival_to_checkin, lobby, room, checkin_to_provider, cycle, virtual_wait',
    version         UInt64,
    is_deleted      UInt8,
    site_id         LowCardinality(String),
    department      LowCardinality(String),
    provider_id     Nullable(String),
    modality        LowCardinality(Nullable(String)),
    started_at      DateTime64(3, 'UTC'),
    ended_at        Nullable(DateTime64(3, 'UTC')) COMMENT 'NULL while the patient is still in the stage',
    minutes         Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (appointment_id, stage);

CREATE TABLE IF NOT EXISTS {db}.queue_waits
(
    appointment_id      String,
    queue               LowCardinality(String),
    wait_key            String COMMENT 'source/event_id of the wait.started event',
    version             UInt64,
    is_deleted          UInt8,
    site_id             LowCardinality(String),
    department          LowCardinality(String),
    provider_id         Nullable(String),
    started_at          DateTime64(3, 'UTC'),
    ended_at            Nullable(DateTime64(3, 'UTC')),
    outcome             LowCardinality(Nullable(String)) COMMENT 'called or abandoned; NULL while waiting',
    wait_min            Nullable(Float64),
    estimated_wait_min  Nullable(Float64),
    estimate_error_min  Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (appointment_id, queue, wait_key);

CREATE TABLE IF NOT EXISTS {db}.friction_events
(
    appointment_id  String,
    rule            LowCardinality(String),
    hit_key         String COMMENT 'distinguishes several hits of one rule (e.g. one per queue wait)',
    version         UInt64,
    is_deleted      UInt8,
    severity        LowCardinality(String),
    site_id         LowCardinality(String),
    department      LowCardinality(String),
    provider_id     Nullable(String),
    modality        LowCardinality(Nullable(String)),
    occurred_at     DateTime64(3, 'UTC') COMMENT 'the touchpoint: the event that closed the measured interval',
    scheduled_start Nullable(DateTime64(3, 'UTC')),
    value           Float64,
    threshold       Float64
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (appointment_id, rule, hit_key);

CREATE TABLE IF NOT EXISTS {db}.patient_journeys
(
    patient_key                         String,
    version                             UInt64,
    appointments                        UInt32,
    visits_completed                    UInt32,
    no_shows                            UInt32,
    late_cancellations                  UInt32,
    first_seen_at                       Nullable(DateTime64(3, 'UTC')),
    last_completed_visit_at             Nullable(DateTime64(3, 'UTC')),
    days_since_previous_completed_visit Nullable(Float64),
    friction_visits                     UInt32,
    friction_visits_returned_90d        UInt32,
    friction_visits_decided_90d         UInt32,
    clean_visits                        UInt32,
    clean_visits_returned_90d           UInt32,
    clean_visits_decided_90d            UInt32
)
ENGINE = ReplacingMergeTree(version)
ORDER BY patient_key;

CREATE TABLE IF NOT EXISTS {db}.patient_visits
(
    patient_key          String,
    appointment_id       String,
    version              UInt64,
    is_deleted           UInt8,
    site_id              LowCardinality(String),
    department           LowCardinality(String),
    provider_id          Nullable(String),
    visit_at             DateTime64(3, 'UTC') COMMENT 'scheduled_start of the completed visit',
    had_friction         UInt8,
    friction_rules       Array(LowCardinality(String)),
    returned_within_90d  Nullable(UInt8) COMMENT 'NULL until a return is seen or 90 days pass in event time',
    days_to_next_visit   Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (patient_key, appointment_id);

CREATE TABLE IF NOT EXISTS {db}.site_hourly
(
    site_id                   LowCardinality(String),
    department                LowCardinality(String),
    hour                      DateTime('UTC') COMMENT 'hour of scheduled_start',
    computed_at               DateTime64(6, 'UTC'),
    appointments              UInt32,
    in_person                 UInt32,
    telehealth                UInt32,
    arrivals                  UInt32,
    completed                 UInt32,
    no_shows                  UInt32,
    cancellations             UInt32,
    late_cancellations        UInt32,
    left_without_being_seen   UInt32,
    lobby_wait_n              UInt32,
    lobby_wait_sum_min        Float64,
    lobby_wait_p50_min        Nullable(Float64),
    lobby_wait_p90_min        Nullable(Float64),
    room_wait_n               UInt32,
    room_wait_sum_min         Float64,
    room_wait_p50_min         Nullable(Float64),
    room_wait_p90_min         Nullable(Float64),
    provider_delay_n          UInt32,
    provider_delay_sum_min    Float64,
    cycle_time_n              UInt32,
    cycle_time_sum_min        Float64,
    cycle_time_p50_min        Nullable(Float64),
    telehealth_connected      UInt32,
    telehealth_abandoned      UInt32,
    friction_count            UInt32
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (site_id, department, hour);

CREATE TABLE IF NOT EXISTS {db}.pipeline_markers
(
    marker_id         String,
    stage             LowCardinality(String) COMMENT 'journey or patient',
    input_topic       String,
    input_partition   UInt32,
    output_partition  UInt32,
    watermark         Nullable(DateTime64(3, 'UTC')),
    written_at        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(written_at)
ORDER BY (marker_id, stage, input_topic, input_partition, output_partition);
