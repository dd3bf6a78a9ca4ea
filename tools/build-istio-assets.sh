#!/usr/bin/env bash
# Build a REAL istiod (pilot-discovery, from the Go module istio.io/istio) and the test-only SDS
# stand-in (tools/fakesds) from the Go module proxy. Idempotent: whatever already exists in the
# assets directory is skipped, so only the first run on a machine pays for the build.
#
#   tools/build-istio-assets.sh                      # Istio 1.31 -> ~/.cache/mesh-reconciler/istio/1.31-eed52ebb66ad/
#   ISTIO_RELEASE=1.30 tools/build-istio-assets.sh   # the release-1.30 branch (for the 1.30 failover rule)
#   ISTIO_ASSETS=/dir tools/build-istio-assets.sh    # uses/fills that directory instead
#
# istio.io/istio publishes no semver tags the Go proxy understands (its tags are "1.x.y"), so
# releases are pinned by pseudo-version. Cost of the first build (measured, 2 cores): ~10-25 min
# wall, ~17 CPU-minutes, ~2.3 GB peak RSS, ~3 GB module + build cache; a warm re-run is seconds.
set -euo pipefail

ISTIO_RELEASE="${ISTIO_RELEASE:-1.31}"
GO_MOD_EDITS=()
case "$ISTIO_RELEASE" in
  1.31) ISTIO_MODVER=v0.0.0-20260827124520-eed52ebb66ad ;;
  1.30)
    ISTIO_MODVER=v0.0.0-20260826214018-9739e10eb9d7
    # The release-1.30 pseudo-version pins pre-release dependency versions the proxy no longer
    # serves (403); these are the nearest served ones (same APIs, verified by the tests).
    GO_MOD_EDITS=(
      -require istio.io/api@v1.30.8
      -require istio.io/client-go@v1.30.8
      -require github.com/envoyproxy/go-control-plane/envoy@v1.37.1-0.20260713214202-ca8ce173c36f
      -require github.com/envoyproxy/go-control-plane/contrib@v1.36.1-0.20260713214202-ca8ce173c36f
      -replace github.com/agentgateway/agentgateway/api=github.com/agentgateway/agentgateway/api@v0.0.0-20260501213430-773586679f1c
    ) ;;
  *) printf '[build-istio-assets] unknown ISTIO_RELEASE %s (known: 1.31, 1.30)\n' "$ISTIO_RELEASE" >&2; exit 2 ;;
esac
REVISION="${ISTIO_MODVER##*-}"
BUILD_VERSION="${ISTIO_RELEASE}-dev+${REVISION}"
ASSETS="${ISTIO_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-reconciler/istio/${ISTIO_RELEASE}-${REVISION}}"
HERE="$(cd "$(dirname "$0")" && pwd)"
# Static binaries; keep CGO_ENABLED fixed: changing it invalidates the whole Go build cache.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod"

LOG_PREFIX=build-istio-assets WHAT="istio.io/istio ${ISTIO_MODVER}"
HINT="ISTIO_ASSETS to a directory holding pilot-discovery, fakesds and crd-all.gen.yaml"
# shellcheck source=tools/go-build-common.sh
. "$HERE/go-build-common.sh"
cd "$work"
# One module for both binaries: fakesds then compiles against exactly the go-control-plane and
# gRPC versions istiod itself uses.
printf 'module local/istio-assets\n\ngo 1.26.0\n' > go.mod
mkdir -p cmd/fakesds && cp "$HERE/fakesds/main.go" cmd/fakesds/main.go
go mod edit -require "istio.io/istio@${ISTIO_MODVER}"
if [ "${#GO_MOD_EDITS[@]}" -gt 0 ]; then go mod edit "${GO_MOD_EDITS[@]}"; fi

if [ ! -x "$ASSETS/pilot-discovery" ]; then
  log "building pilot-discovery ${BUILD_VERSION} (first run only, ~10-25 min on 2 cores) ..."
  pkg=istio.io/istio/pkg/version
  nice -n "${NICE:-10}" go build -trimpath \
    -ldflags "-s -w -X ${pkg}.buildVersion=${BUILD_VERSION} -X ${pkg}.buildGitRevision=${REVISION} -X ${pkg}.buildTag=${BUILD_VERSION} -X ${pkg}.buildStatus=Clean" \
    -o "$ASSETS/pilot-discovery.tmp" istio.io/istio/pilot/cmd/pilot-discovery
  mv "$ASSETS/pilot-discovery.tmp" "$ASSETS/pilot-discovery"
fi
if [ ! -x "$ASSETS/fakesds" ] || [ "$HERE/fakesds/main.go" -nt "$ASSETS/fakesds" ]; then
  log "building fakesds (test-only SDS stand-in for istio-agent) ..."
  go build -trimpath -ldflags "-s -w" -o "$ASSETS/fakesds.tmp" ./cmd/fakesds
  mv "$ASSETS/fakesds.tmp" "$ASSETS/fakesds"
fi
if [ ! -f "$ASSETS/crd-all.gen.yaml" ]; then
  dir="$(go mod download -json "istio.io/istio@${ISTIO_MODVER}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')"
  cp "$dir/manifests/charts/base/files/crd-all.gen.yaml" "$ASSETS/crd-all.gen.yaml.tmp"
  mv "$ASSETS/crd-all.gen.yaml.tmp" "$ASSETS/crd-all.gen.yaml"
fi
"$ASSETS/pilot-discovery" version --short 2>/dev/null | head -n 1 >&2 || true
echo "$ASSETS"
