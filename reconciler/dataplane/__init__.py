"""What the data plane does with what we render: istiod's priorities, Envoy's load, and the
``explain`` / ``envoy-config`` views built on them. Read-only consumers of a plan; nothing here writes."""

DEFAULT_LISTENER_PORT = 15001
"""Istio's outbound capture port; any free port works for a stand-alone Envoy."""
DEFAULT_ADMIN_PORT = 15000
"""Istio's sidecar admin port."""
