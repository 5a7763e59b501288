-- The embedded directory (principals, client secrets, group memberships)
-- and role assignments.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; NULL means not set.
-- Text columns compare with the BINARY collation: byte-wise, as Go does.

CREATE TABLE principals (
    -- Object ID: a canonical lowercase UUID, chosen by the hub.
    id            TEXT    NOT NULL PRIMARY KEY,
    type          TEXT    NOT NULL CHECK (type IN ('user', 'servicePrincipal', 'group')),
    display_name  TEXT    NOT NULL,
    -- Users only: the login name as given, and its case-folded key
    -- (store.FoldLoginName), which is unique and what lookups compare.
    login_name    TEXT,
    login_key     TEXT    UNIQUE,
    -- Users only, optional: opaque to the store.
    password_hash BLOB,
    -- Service principals only: the application ID they sign in with.
    client_id     TEXT    UNIQUE,
    created_at    INTEGER NOT NULL,
    CHECK ((type = 'user') = (login_name IS NOT NULL AND login_key IS NOT NULL)),
    CHECK (type = 'user' OR (login_name IS NULL AND login_key IS NULL AND password_hash IS NULL)),
    CHECK ((type = 'servicePrincipal') = (client_id IS NOT NULL))
) STRICT;

-- Listing in (display_name, id) order, all principals or of one type.
CREATE INDEX principals_display_name ON principals (display_name, id);
CREATE INDEX principals_type_display_name ON principals (type, display_name, id);

CREATE TABLE client_secrets (
    id           TEXT    NOT NULL PRIMARY KEY,
    principal_id TEXT    NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    -- SHA-256 of the secret; the secret itself is never stored.
    hash         BLOB    NOT NULL CHECK (length(hash) = 32),
    description  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX client_secrets_principal_id ON client_secrets (principal_id, created_at, id);

-- Direct memberships: member_id is a member of group_id. The store keeps
-- group_id a group and the graph free of cycles.
CREATE TABLE memberships (
    group_id  TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id),
    CHECK (group_id <> member_id)
) STRICT, WITHOUT ROWID;

-- Walking up from a member to its groups (GroupsOf).
CREATE INDEX memberships_member_id ON memberships (member_id, group_id);

CREATE TABLE role_assignments (
    id             TEXT    NOT NULL PRIMARY KEY,
    -- No foreign key: an assignment may name a principal of another issuer.
    -- Deleting an embedded principal deletes the assignments naming it.
    principal_id   TEXT    NOT NULL,
    principal_type TEXT    NOT NULL CHECK (principal_type IN ('user', 'servicePrincipal', 'group')),
    role_id        TEXT    NOT NULL,
    -- A scope path: '/', '/groups/{g}', '/groups/{g}/clusters/{c}' or
    -- '/groups/{g}/clusters/{c}/namespaces/{ns}'.
    scope          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    -- Also the index behind selecting by principal.
    UNIQUE (principal_id, role_id, scope)
) STRICT;

-- Selecting by scope (exact, ancestors, and the range of descendants), in
-- listing order.
CREATE INDEX role_assignments_scope ON role_assignments (scope, principal_id, role_id, id);
