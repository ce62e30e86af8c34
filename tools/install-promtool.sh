#!/usr/bin/env bash
# Installs promtool (Prometheus's rule checker and rule unit-test runner), pinned, into the
# same cache as tools/install.sh, built with `go install` from the Go module proxy.
# Idempotent: when the stamp matches the pin it returns at once. Prints the path of the
# promtool binary on its last line.
#
# Prometheus tags its Go module v0.<major*100+minor>.<patch>: v0.316.0 is Prometheus 3.16.0.
set -euo pipefail

PROMETHEUS_MODULE_VERSION=v0.316.0

TOOLS_DIR=${LEARNOSITY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/learnosity-connector/tools}
STAMP="$TOOLS_DIR/.promtool-installed"
PROMTOOL="$TOOLS_DIR/bin/promtool"

mkdir -p "$TOOLS_DIR/bin"
# one installer at a time (a separate lock from tools/install.sh: the two never share files)
exec 9>"$TOOLS_DIR/.promtool.lock"
flock 9

if [[ -f $STAMP && "$(cat "$STAMP")" == "$PROMETHEUS_MODULE_VERSION" && -x $PROMTOOL ]]; then
    echo "$PROMTOOL"
    exit 0
fi
rm -f "$STAMP"
log() { echo "tools/install-promtool.sh: $*" >&2; }

if ! command -v go >/dev/null; then
    log "go is required to build promtool (install Go 1.24 or newer)"
    exit 1
fi
log "building promtool ($PROMETHEUS_MODULE_VERSION) with go install (several minutes on first run)"
GOBIN="$TOOLS_DIR/bin" CGO_ENABLED=0 go install -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
"$PROMTOOL" --version >/dev/null
echo "$PROMETHEUS_MODULE_VERSION" >"$STAMP"
echo "$PROMTOOL"
