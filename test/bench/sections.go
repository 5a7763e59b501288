package bench

// All is every section, in the order make bench runs them.
var All = []Section{Requests, Bulk, Fairness, Streams, Restart, Agents, Reconnect, Kubernetes}
