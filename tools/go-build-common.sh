# Sourced by tools/build-*-assets.sh: the checks and locking every Go-module-proxy build shares.
# Before sourcing, set LOG_PREFIX, ASSETS (output directory), WHAT (what needs Go >= 1.26) and
# HINT (the variable that points at prebuilt binaries instead).

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "go is not installed: install Go >= 1.26 (https://go.dev/dl/) or set $HINT"
  exit 3
fi
go_minor="$(go env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')"
if [ -n "$go_minor" ] && [ "$go_minor" -lt 26 ]; then
  log "$(go env GOVERSION) is too old: $WHAT needs Go >= 1.26"
  exit 3
fi
mkdir -p "$ASSETS"
# One build at a time per assets directory (a second invocation waits, then finds the binaries).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$ASSETS/.build.lock"
  if ! flock -n 9; then
    log "another build into $ASSETS is running; waiting for it ..."
    flock 9
  fi
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
