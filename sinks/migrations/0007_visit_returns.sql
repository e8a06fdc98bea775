-- patient_visits carries what the retention SQL (dashboards/retention.py) needs of a
-- visit, so the loyalty panels read one table instead of a window over every visit of
-- the range joined to appointment_journeys (0.4-1.6 s on 90 days of a 10 M-journey
-- history, issue 17):
--   visit_type      the stratum beside department ('' when the journey has none);
--   days_to_return  days to the patient's next completed visit 12 hours or more later,
--                   the retention measures' return (journey/METRICS.md "Retention").
-- The per-patient journey writes both from now on (journey/patient.py). Rows already here
-- get them below: every current row again, at its own version (of two rows with equal
-- key and version the later insert wins), in its own month partition.

ALTER TABLE {db}.patient_visits
    ADD COLUMN IF NOT EXISTS visit_type LowCardinality(String) DEFAULT ''
    COMMENT 'of the appointment; empty when unknown' AFTER provider_id,
    ADD COLUMN IF NOT EXISTS days_to_return Nullable(Float64)
    COMMENT 'days to the next completed visit 12 h or more later; NULL: none yet' AFTER days_to_next_visit;

INSERT INTO {db}.patient_visits
SELECT v.patient_key, v.appointment_id, v.version, v.is_deleted, v.site_id, v.department, v.provider_id,
       ifNull(j.visit_type, '') AS visit_type, v.visit_at, v.had_friction, v.friction_rules,
       v.returned_within_90d, v.days_to_next_visit,
       (v.return_ms - toUnixTimestamp64Milli(v.visit_at)) / 86400000 AS days_to_return
FROM (
    SELECT *, min(toNullable(toUnixTimestamp64Milli(visit_at))) OVER (
               PARTITION BY patient_key ORDER BY toUnixTimestamp64Milli(visit_at)
               RANGE BETWEEN 43200000 FOLLOWING AND UNBOUNDED FOLLOWING
           ) AS return_ms
    FROM {db}.patient_visits FINAL
) AS v
LEFT JOIN (
    SELECT appointment_id, visit_type FROM {db}.appointment_journeys FINAL WHERE status = 'completed'
) AS j ON j.appointment_id = v.appointment_id;
