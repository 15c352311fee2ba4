-- Events the relay could not publish or decode (shared/messaging/relay.py): quarantined with their
-- position and the reason, so one bad row never stalls the ordered log. `repo-pilot health` lists them.
CREATE TABLE IF NOT EXISTS relay_faults (
    global_position bigint      PRIMARY KEY,
    event_id        uuid,
    stream_id       text,
    type            text,
    kind            text        NOT NULL,  -- undecodable | too_large | rejected
    reason          text        NOT NULL,
    relay           text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- One run at a time per repository and ref (shared/app/requests.py): finds the requests of a
-- target without scanning the log. Partial, so ordinary appends do not pay for it; a hash index,
-- because a btree entry is limited to ~8 kB and a row must never be refused for its repo's length.
CREATE INDEX IF NOT EXISTS events_requested_repo_idx ON events USING hash ((data->>'repo'))
    WHERE type = 'PipelineRequested';
