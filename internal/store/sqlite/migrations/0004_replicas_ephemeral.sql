-- Hub replicas with their leases, and ephemeral records that every replica
-- sees. A cluster's tunnel holder stays in clusters.tunnel_replica, with no
-- foreign key to replicas: a replica may record a tunnel before its first
-- lease.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; NULL means not set.

CREATE TABLE replicas (
    name       TEXT    NOT NULL PRIMARY KEY,
    -- Where the other replicas reach this one, https://HOST[:PORT].
    url        TEXT    NOT NULL,
    -- The end of the lease: from then on the replica is taken for dead.
    expires_at INTEGER NOT NULL
) STRICT;

-- RemoveReplica and ExpireReplicas find the tunnels a replica holds.
CREATE INDEX clusters_tunnel_replica ON clusters (tunnel_replica);

CREATE TABLE ephemeral (
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    -- Opaque to the store.
    value      BLOB    NOT NULL,
    -- 1 when put, incremented by each compare-and-swap update.
    version    INTEGER NOT NULL CHECK (version >= 1),
    -- The first instant the record is no longer valid.
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT;

-- PurgeEphemeral deletes by expiry.
CREATE INDEX ephemeral_expires_at ON ephemeral (expires_at);
