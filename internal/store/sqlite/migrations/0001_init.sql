-- Clusters and their one-time join tokens.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; NULL means not set.

CREATE TABLE clusters (
    -- '/groups/{group_name}/clusters/{name}'; the key other tables refer to.
    id                  TEXT    NOT NULL PRIMARY KEY,
    group_name          TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    location            TEXT    NOT NULL,
    mode                TEXT    NOT NULL CHECK (mode IN ('kubernetes-rbac', 'hub-rbac')),
    created_at          INTEGER NOT NULL,
    -- Agent: NULL key until enrolled; versions and last_seen_at from heartbeats.
    agent_public_key    BLOB,
    enrolled_at         INTEGER,
    agent_version       TEXT    NOT NULL DEFAULT '',
    kubernetes_version  TEXT    NOT NULL DEFAULT '',
    last_seen_at        INTEGER,
    -- Tunnel holder: '' and NULL when no replica holds the tunnel.
    tunnel_replica      TEXT    NOT NULL DEFAULT '',
    tunnel_connected_at INTEGER,
    -- Also the index behind listing in (group, name) order.
    UNIQUE (group_name, name)
) STRICT;

CREATE TABLE join_tokens (
    -- SHA-256 of the token; the token itself is never stored.
    hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    cluster_id TEXT    NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

CREATE INDEX join_tokens_cluster_id ON join_tokens (cluster_id);
