-- The latest status report of each cluster's agent (store.AgentStatus):
-- its versions, the cluster's node count (-1: the agent could not tell) and
-- the agent's last problem. status_reported_at is NULL until the first
-- report; the other columns then hold their defaults.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC; NULL means not set.

ALTER TABLE clusters ADD COLUMN status_agent_version      TEXT    NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN status_kubernetes_version TEXT    NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN status_node_count         INTEGER NOT NULL DEFAULT 0 CHECK (status_node_count >= -1);
ALTER TABLE clusters ADD COLUMN status_last_error         TEXT    NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN status_reported_at        INTEGER;
