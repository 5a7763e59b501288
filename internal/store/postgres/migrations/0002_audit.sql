-- The audit trail (package audit): one chain of events, shared by every
-- replica, appended to and never changed. seq is the event's place in the
-- chain, 1, 2, ...; prev_hash is the hash of the event before it (all zero
-- before the first) and hash is audit.Event.ComputeHash(prev_hash), over
-- every other column. AppendAudit serializes appends with a
-- transaction-level advisory lock; the primary key refuses a fork.
--
-- Times are timestamptz (microseconds); the duration is bigint nanoseconds.
-- The columns that ListAudit compares use the "C" collation.

CREATE TABLE audit_events (
    seq            bigint           NOT NULL PRIMARY KEY CHECK (seq >= 1),
    event_time     timestamptz      NOT NULL,
    type           text COLLATE "C" NOT NULL,
    request_id     text             NOT NULL,
    replica        text             NOT NULL,
    principal_id   text COLLATE "C" NOT NULL,
    principal_type text             NOT NULL,
    principal_name text             NOT NULL,
    source_addr    text             NOT NULL,
    cluster_id     text COLLATE "C" NOT NULL,
    auth_mode      text             NOT NULL,
    decision       text COLLATE "C" NOT NULL,
    reason         text             NOT NULL,
    verb           text COLLATE "C" NOT NULL,
    api_group      text             NOT NULL,
    resource       text             NOT NULL,
    subresource    text             NOT NULL,
    namespace      text             NOT NULL,
    name           text             NOT NULL,
    path           text             NOT NULL,
    status         bigint           NOT NULL CHECK (status >= 0),
    bytes_in       bigint           NOT NULL CHECK (bytes_in >= 0),
    bytes_out      bigint           NOT NULL CHECK (bytes_out >= 0),
    duration_ns    bigint           NOT NULL CHECK (duration_ns >= 0),
    prev_hash      bytea            NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea            NOT NULL CHECK (length(hash) = 32)
);

-- ListAudit's filters: a time range, or one cluster's or principal's
-- events in seq order.
CREATE INDEX audit_events_event_time ON audit_events (event_time);
CREATE INDEX audit_events_cluster_id ON audit_events (cluster_id, seq);
CREATE INDEX audit_events_principal_id ON audit_events (principal_id, seq);
