-- `recorded_at` is read after the append lock is taken (clock_timestamp()), no longer the column's
-- default now(), which is when the transaction *began*: a writer that began first but got the
-- lock second stored an earlier time at a later position, so the log's own clock could go
-- backwards (issue 22). Under the lock, positions and recorded times rise together, and
-- `repo-pilot events` shows this clock (an event's `occurred_at` is its writer's clock).
CREATE OR REPLACE FUNCTION append_events(
    p_stream text, p_expected integer, p_lock bigint, p_channel text,
    p_ids uuid[], p_types text[], p_data text[], p_meta text[], p_at timestamptz[],
    p_causation uuid[], p_correlation text[], p_consumer text, p_tracked uuid
) RETURNS TABLE (out_position bigint, out_version integer) AS $$
DECLARE
    current_version integer;
BEGIN
    IF p_consumer IS NOT NULL THEN
        INSERT INTO tracking (consumer, event_id) VALUES (p_consumer, p_tracked) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'event % already processed by %', p_tracked, p_consumer USING ERRCODE = 'RP001';
        END IF;
    END IF;
    IF coalesce(array_length(p_ids, 1), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT coalesce(max(e.version), 0) INTO current_version FROM events e WHERE e.stream_id = p_stream;
    IF p_expected IS NOT NULL AND current_version <> p_expected THEN
        RAISE EXCEPTION 'stream %: expected version %, found %', p_stream, p_expected, current_version
            USING ERRCODE = 'RP002', DETAIL = current_version::text;
    END IF;
    RETURN QUERY
    INSERT INTO events (stream_id, version, event_id, type, data, metadata, occurred_at, causation_id,
                        correlation_id, recorded_at)
    SELECT p_stream, current_version + u.i::integer, u.event_id, u.type, u.data::jsonb, u.metadata::jsonb,
           u.occurred_at, u.causation_id, u.correlation_id, clock_timestamp()
    FROM unnest(p_ids, p_types, p_data, p_meta, p_at, p_causation, p_correlation) WITH ORDINALITY
         AS u(event_id, type, data, metadata, occurred_at, causation_id, correlation_id, i)
    ORDER BY u.i
    RETURNING events.global_position, events.version;
    PERFORM pg_notify(p_channel, '');
END;
$$ LANGUAGE plpgsql;
