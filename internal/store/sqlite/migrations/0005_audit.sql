-- The audit trail (package audit): one chain of events, shared by every
-- writer, appended to and never changed. seq is the event's place in the
-- chain, 1, 2, ...; prev_hash is the hash of the event before it (all zero
-- before the first) and hash is audit.Event.ComputeHash(prev_hash), over
-- every other column.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; the duration is
-- INTEGER nanoseconds.

CREATE TABLE audit_events (
    seq            INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
    event_time     INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    replica        TEXT    NOT NULL,
    principal_id   TEXT    NOT NULL,
    principal_type TEXT    NOT NULL,
    principal_name TEXT    NOT NULL,
    source_addr    TEXT    NOT NULL,
    cluster_id     TEXT    NOT NULL,
    auth_mode      TEXT    NOT NULL,
    decision       TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    verb           TEXT    NOT NULL,
    api_group      TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    subresource    TEXT    NOT NULL,
    namespace      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    path           TEXT    NOT NULL,
    status         INTEGER NOT NULL CHECK (status >= 0),
    bytes_in       INTEGER NOT NULL CHECK (bytes_in >= 0),
    bytes_out      INTEGER NOT NULL CHECK (bytes_out >= 0),
    duration_ns    INTEGER NOT NULL CHECK (duration_ns >= 0),
    prev_hash      BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- ListAudit's filters: a time range, or one cluster's or principal's
-- events in seq order.
CREATE INDEX audit_events_event_time ON audit_events (event_time);
CREATE INDEX audit_events_cluster_id ON audit_events (cluster_id, seq);
CREATE INDEX audit_events_principal_id ON audit_events (principal_id, seq);
