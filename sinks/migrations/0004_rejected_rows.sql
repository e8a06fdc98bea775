-- Rows the writer could not insert (sinks/rows.py): a value its conversion refuses, a
-- row the engine refuses, an unknown table, a message that is not a bundle. They are
-- set aside here, with the reason and the Kafka message they came in, instead of being
-- dropped or retried forever. A redelivered batch replaces its rows (same key), so a
-- bad row is recorded once. Re-runnable (IF NOT EXISTS).

CREATE TABLE IF NOT EXISTS {db}.rejected_rows
(
    `table`          LowCardinality(String) COMMENT 'the table the row was for (as sent; ? for a message that is not a bundle)',
    reason           String COMMENT 'why it was refused: the conversion or ClickHouse error',
    row              String COMMENT 'the row as JSON, as received; cut at row_limit bytes when row_truncated',
    row_truncated    UInt8,
    row_bytes        UInt64 COMMENT 'size of the whole row JSON',
    output_topic     LowCardinality(String) COMMENT 'the Kafka message it came in (empty: written without Kafka)',
    output_partition UInt32,
    output_offset    UInt64,
    row_index        UInt32 COMMENT 'position of the row in its table list within the message',
    rejected_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(rejected_at)
ORDER BY (output_topic, output_partition, output_offset, `table`, row_index);
