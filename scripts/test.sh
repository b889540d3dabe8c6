#!/usr/bin/env bash
# Installs everything the tests need (Debian packages as root, Go modules) and
# runs the whole test suite with the race detector. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
go mod download
go vet ./...
# -p 1 keeps the real-server tests from competing for the machine's two cores;
# the packages' own tests run in parallel inside each package where safe.
go test -race -count=1 -timeout 40m -p 1 "$@" ./...
