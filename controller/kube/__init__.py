"""Fleet mode's Kubernetes shell (docs/fleet.md): the API client and its transport, watches,
the leader elector, heartbeats, the member view and Events. Imported only in fleet mode."""
