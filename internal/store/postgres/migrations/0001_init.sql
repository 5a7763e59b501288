-- The hub's whole schema: clusters and their join tokens, the embedded
-- directory (principals, client secrets, group memberships), role
-- assignments, hub replicas, and ephemeral records. It is the schema that
-- the sqlite backend reaches through its migrations 0001 to 0004.
--
-- Times are timestamptz (microseconds); NULL means not set. Text columns
-- that identify, compare or sort use the "C" collation: byte-wise, as Go
-- compares strings, whatever the database's default collation.

CREATE TABLE clusters (
    -- '/groups/{group_name}/clusters/{name}'; the key other tables refer to.
    id                        text COLLATE "C" NOT NULL PRIMARY KEY,
    group_name                text COLLATE "C" NOT NULL,
    name                      text COLLATE "C" NOT NULL,
    location                  text             NOT NULL,
    mode                      text             NOT NULL CHECK (mode IN ('kubernetes-rbac', 'hub-rbac')),
    created_at                timestamptz      NOT NULL,
    -- Agent: NULL key until enrolled; versions and last_seen_at from heartbeats.
    agent_public_key          bytea,
    enrolled_at               timestamptz,
    agent_version             text             NOT NULL DEFAULT '',
    kubernetes_version        text             NOT NULL DEFAULT '',
    last_seen_at              timestamptz,
    -- The agent's latest status report (store.AgentStatus):
    -- status_reported_at is NULL until the first; the others then hold
    -- their defaults.
    status_agent_version      text             NOT NULL DEFAULT '',
    status_kubernetes_version text             NOT NULL DEFAULT '',
    status_node_count         bigint           NOT NULL DEFAULT 0 CHECK (status_node_count >= -1),
    status_last_error         text             NOT NULL DEFAULT '',
    status_reported_at        timestamptz,
    -- Tunnel holder: '' and NULL when no replica holds the tunnel. No
    -- foreign key to replicas: a replica may record a tunnel before its
    -- first lease.
    tunnel_replica            text COLLATE "C" NOT NULL DEFAULT '',
    tunnel_connected_at       timestamptz,
    -- Also the index behind listing in (group, name) order.
    UNIQUE (group_name, name)
);

-- RemoveReplica and ExpireReplicas find the tunnels a replica holds.
CREATE INDEX clusters_tunnel_replica ON clusters (tunnel_replica) WHERE tunnel_replica <> '';

-- The watches (store.Watcher, LISTEN tether_clusters) learn of a cluster
-- whose tunnel holder or agent key is written, or which is deleted. The
-- server delivers the notification when the transaction commits.
CREATE FUNCTION tether_notify_cluster() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tether_clusters', OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER clusters_notify
    AFTER UPDATE OF tunnel_replica, tunnel_connected_at, agent_public_key OR DELETE ON clusters
    FOR EACH ROW EXECUTE FUNCTION tether_notify_cluster();

CREATE TABLE join_tokens (
    -- SHA-256 of the token; the token itself is never stored.
    hash       bytea            NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    cluster_id text COLLATE "C" NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    created_at timestamptz      NOT NULL,
    expires_at timestamptz      NOT NULL,
    used_at    timestamptz
);

CREATE INDEX join_tokens_cluster_id ON join_tokens (cluster_id);

CREATE TABLE principals (
    -- Object ID: a canonical lowercase UUID, chosen by the hub.
    id            text COLLATE "C" NOT NULL PRIMARY KEY,
    type          text COLLATE "C" NOT NULL CHECK (type IN ('user', 'servicePrincipal', 'group')),
    display_name  text COLLATE "C" NOT NULL,
    -- Users only: the login name as given, and its case-folded key
    -- (store.FoldLoginName), which is unique and what lookups compare.
    login_name    text,
    login_key     text COLLATE "C" UNIQUE,
    -- Users only, optional: opaque to the store.
    password_hash bytea,
    -- Service principals only: the application ID they sign in with.
    client_id     text COLLATE "C" UNIQUE,
    created_at    timestamptz      NOT NULL,
    CHECK ((type = 'user') = (login_name IS NOT NULL AND login_key IS NOT NULL)),
    CHECK (type = 'user' OR (login_name IS NULL AND login_key IS NULL AND password_hash IS NULL)),
    CHECK ((type = 'servicePrincipal') = (client_id IS NOT NULL))
);

-- Listing in (display_name, id) order, all principals or of one type.
CREATE INDEX principals_display_name ON principals (display_name, id);
CREATE INDEX principals_type_display_name ON principals (type, display_name, id);

CREATE TABLE client_secrets (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    principal_id text COLLATE "C" NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         bytea            NOT NULL CHECK (length(hash) = 32),
    description  text             NOT NULL,
    created_at   timestamptz      NOT NULL,
    expires_at   timestamptz      NOT NULL
);

CREATE INDEX client_secrets_principal_id ON client_secrets (principal_id, created_at, id);

-- Direct memberships: member_id is a member of group_id. The store keeps
-- group_id a group and the graph free of cycles.
CREATE TABLE memberships (
    group_id  text COLLATE "C" NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    member_id text COLLATE "C" NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id),
    CHECK (group_id <> member_id)
);

-- Walking up from a member to its groups (GroupsOf).
CREATE INDEX memberships_member_id ON memberships (member_id, group_id);

CREATE TABLE role_assignments (
    id             text COLLATE "C" NOT NULL PRIMARY KEY,
    -- No foreign key: an assignment may name a principal of another issuer.
    -- Deleting an embedded principal deletes the assignments naming it.
    principal_id   text COLLATE "C" NOT NULL,
    principal_type text COLLATE "C" NOT NULL CHECK (principal_type IN ('user', 'servicePrincipal', 'group')),
    role_id        text COLLATE "C" NOT NULL,
    -- A scope path: '/', '/groups/{g}', '/groups/{g}/clusters/{c}' or
    -- '/groups/{g}/clusters/{c}/namespaces/{ns}'.
    scope          text COLLATE "C" NOT NULL,
    created_at     timestamptz      NOT NULL,
    -- Also the index behind selecting by principal.
    UNIQUE (principal_id, role_id, scope)
);

-- Selecting by scope (exact, ancestors, and the range of descendants), in
-- listing order.
CREATE INDEX role_assignments_scope ON role_assignments (scope, principal_id, role_id, id);

CREATE TABLE replicas (
    name       text COLLATE "C" NOT NULL PRIMARY KEY,
    -- Where the other replicas reach this one, https://HOST[:PORT].
    url        text             NOT NULL,
    -- The end of the lease: from then on the replica is taken for dead.
    expires_at timestamptz      NOT NULL
);

CREATE TABLE ephemeral (
    kind       text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    -- Opaque to the store.
    value      bytea            NOT NULL,
    -- 1 when put, incremented by each compare-and-swap update.
    version    bigint           NOT NULL CHECK (version >= 1),
    -- The first instant the record is no longer valid.
    expires_at timestamptz      NOT NULL,
    PRIMARY KEY (kind, key)
);

-- PurgeEphemeral deletes by expiry.
CREATE INDEX ephemeral_expires_at ON ephemeral (expires_at);
