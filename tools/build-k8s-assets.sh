#!/usr/bin/env bash
# Build the real control-plane binaries the tests and the demo run: kube-apiserver (from the
# k8s.io/kubernetes module at a pinned release) and etcd 3.6 (from go.etcd.io/etcd/server/v3),
# both from the Go module proxy. Idempotent: whatever already exists in the assets directory is
# skipped, so only the first run on a machine pays for the build.
#
#   tools/build-k8s-assets.sh            # builds into ~/.cache/mesh-reconciler/k8s/<version>/
#   KUBEBUILDER_ASSETS=/dir tools/...    # uses/fills that directory instead (envtest convention)
#
# Needs Go >= 1.26 (k8s 1.37 declares go 1.26); GOTOOLCHAIN=local so a newer requirement fails
# loudly instead of downloading a toolchain.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
ASSETS="${KUBEBUILDER_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-reconciler/k8s/${K8S_VERSION#v}}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

LOG_PREFIX=build-k8s-assets WHAT="kube-apiserver ${K8S_VERSION}"
HINT="KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd"
# shellcheck source=tools/go-build-common.sh
. "$(cd "$(dirname "$0")" && pwd)/go-build-common.sh"

if [ ! -x "$ASSETS/etcd" ]; then
  log "building etcd $ETCD_VERSION (first run only, ~1 min) ..."
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init local/etcd-build >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1 || go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
fi

if [ ! -x "$ASSETS/kube-apiserver" ]; then
  log "building kube-apiserver $K8S_VERSION (first run only, ~7 min on 2 cores, measured) ..."
  mkdir -p "$work/apiserver" && cd "$work/apiserver"
  go mod init local/kube-apiserver-build >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')"
  staging_version="v0.${K8S_VERSION#v1.}"
  # Every staging module is required at v0.0.0 upstream; point each at its published release.
  awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u | while read -r mod; do
    go mod edit -replace "${mod}=${mod}@${staging_version}"
  done
  go mod edit -require "k8s.io/kubernetes@${K8S_VERSION}"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  go mod tidy >/dev/null 2>&1 || go mod tidy
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
    -o "$ASSETS/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
fi

"$ASSETS/etcd" --version | head -n 1 >&2
"$ASSETS/kube-apiserver" --version >&2
echo "$ASSETS"
