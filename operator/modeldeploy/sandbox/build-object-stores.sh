#!/usr/bin/env bash
# Build the sandbox's object stores from upstream sources through the Go module proxy:
#   seaweedfs        SeaweedFS `weed` (a real S3-compatible server: master + volume + filer + S3 gateway
#                    in one process with `weed server -s3`), Apache-2.0
#   fake-gcs-server  fsouza/fake-gcs-server (the GCS JSON/XML API emulator Google's client libraries are
#                    tested against), BSD-2-Clause
#
# Why from source: there is no container runtime and no release download here; the Go module proxy is
# what we have. MinIO is not used: the proxy lists no version of it (its tags are not semver) and it is
# AGPL-licensed.
#
# SeaweedFS's go.mod has a replace directive, so `go install module@version` refuses it; the module's own
# source (from the proxy, checked against go.sum) is copied and built as the main module, with its own
# go.sum, so the dependency versions are exactly upstream's.
#
# Usage: build-object-stores.sh [seaweedfs] [fake-gcs-server]   (default: both)
# Output: $MODELDEPLOY_CACHE/bin/<name>-<version>/{weed,fake-gcs-server}; a folder marked .complete is
# reused as is.
set -euo pipefail

SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"  # weed 4.53
FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"
CACHE="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}"
export CGO_ENABLED=0

step() { echo "[build $(date +%H:%M:%S)] $*"; }
command -v go >/dev/null || { echo "error: go is not installed (needed to build the object stores)" >&2; exit 1; }

build_seaweedfs() {
  local out="$CACHE/bin/seaweedfs-${SEAWEEDFS_VERSION}" work="$CACHE/build/seaweedfs-${SEAWEEDFS_VERSION}"
  if [ -f "$out/.complete" ]; then echo "seaweedfs: $out (cached)"; return; fi
  mkdir -p "$out" "$work"
  step "downloading github.com/seaweedfs/seaweedfs@${SEAWEEDFS_VERSION}"
  local dir
  dir=$(cd "$work" && go mod download -json "github.com/seaweedfs/seaweedfs@${SEAWEEDFS_VERSION}" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] && [ -f "$dir/go.mod" ] || { echo "error: no source for seaweedfs@${SEAWEEDFS_VERSION}" >&2; exit 1; }
  rm -rf "$work/src"
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  step "building weed (SeaweedFS; slow the first time: several hundred packages)"
  (cd "$work/src" && GOFLAGS=-mod=readonly go build -trimpath \
    -ldflags "-s -w -X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${SEAWEEDFS_VERSION##*-}" \
    -o "$out/weed" ./weed)
  rm -rf "$work/src"
  "$out/weed" version | sed -n 1p
  touch "$out/.complete"
  step "done: $out"
}

build_fake_gcs() {
  local out="$CACHE/bin/fake-gcs-server-${FAKE_GCS_VERSION}"
  if [ -f "$out/.complete" ]; then echo "fake-gcs-server: $out (cached)"; return; fi
  mkdir -p "$out"
  step "building fake-gcs-server ${FAKE_GCS_VERSION}"
  GOBIN="$out" go install -trimpath -ldflags "-s -w" \
    "github.com/fsouza/fake-gcs-server@${FAKE_GCS_VERSION}"
  [ -x "$out/fake-gcs-server" ] || { echo "error: $out/fake-gcs-server was not built" >&2; exit 1; }
  touch "$out/.complete"
  step "done: $out"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(seaweedfs fake-gcs-server)
for t in "${targets[@]}"; do
  case "$t" in
    seaweedfs) build_seaweedfs ;;
    fake-gcs-server) build_fake_gcs ;;
    *) echo "error: unknown object store $t (seaweedfs, fake-gcs-server)" >&2; exit 2 ;;
  esac
done
