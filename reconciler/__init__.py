"""mesh-reconciler: a GitOps reconciler for locality-aware multi-cluster service-mesh policy.

The pipeline runs in one direction, each stage a subpackage with a small interface:

    source (git) -> policy (load/validate) -> clusters (discover) -> translate (pure)
        -> diff -> apply/prune -> status (git commit)
"""

__version__ = "0.1.0"
