"""What the data plane does with what we render: istiod's priorities, Envoy's load, and the
``explain`` / ``envoy-config`` views built on them. Read-only consumers of a plan; nothing here writes."""
