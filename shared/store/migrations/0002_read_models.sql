-- Read models folded from the log by the projector (shared/projections.py).
CREATE TABLE IF NOT EXISTS runs (
    run_id        text PRIMARY KEY,
    kind          text NOT NULL,
    repo          text,
    status        text NOT NULL,
    engine        text,
    threshold     double precision,
    categories    jsonb NOT NULL DEFAULT '[]'::jsonb,
    branch        text,
    base_sha      text,
    head_sha      text,
    score         double precision,
    passed        boolean,
    merged        boolean,
    pr_url        text,
    error         text,
    tests         jsonb NOT NULL DEFAULT '{}'::jsonb,
    cost_usd      double precision NOT NULL DEFAULT 0,
    tokens        bigint NOT NULL DEFAULT 0,
    started_at    timestamptz,
    finished_at   timestamptz,
    last_position bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS beads (
    run_id      text NOT NULL,
    bead_id     text NOT NULL,
    seq         integer NOT NULL,
    kind        text NOT NULL,
    title       text NOT NULL,
    status      text NOT NULL,
    started_at  timestamptz,
    ended_at    timestamptz,
    duration_ms bigint,
    error       text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (run_id, bead_id)
);
