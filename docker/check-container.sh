#!/usr/bin/env bash
# Build the docs with docker/Dockerfile in a container and check that it produces the same site
# as the local build (same HTML pages, same diagrams). A separate, slower CI step (~3 min cold).
#
# There is no Docker engine on the CI machines, so this uses buildah (chroot isolation) and a
# stand-in debian:bookworm-slim image made with debootstrap from the configured Debian mirror.
# With Docker available, the equivalent is:
#   docker build -f docker/Dockerfile --output build/site-docker .
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE=docker.io/library/debian:bookworm-slim
OUT=build/site-docker

need() { command -v "$1" >/dev/null 2>&1; }
if ! need buildah || ! need podman || ! need debootstrap; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman debootstrap fuse-overlayfs uidmap
fi

# The stand-in base image, built once from Debian packages (~30 s).
if ! podman image exists "$BASE"; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
           /etc/apt/sources.list 2>/dev/null | grep -oE 'https?://[^ ]+' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /tmp/ggufref-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/tmp/ggufref-debootstrap.log
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

# The local build to compare with (a few seconds when the diagrams are cached).
docker/build-docs.sh >/dev/null

# npm inside the build may need this machine's CA bundle (TLS-inspecting proxy).
ca_args=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  ca_args=(-v /etc/ssl/certs/ca-certificates.crt:/tmp/host-ca.crt:ro
           --build-arg NPM_CONFIG_CAFILE=/tmp/host-ca.crt)
fi

start=$(date +%s)
rm -rf "$OUT"
buildah bud --isolation chroot --pull=never --layers \
  -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore \
  "${ca_args[@]}" --output "type=local,dest=$OUT" . >build/container-build.log 2>&1 || {
  tail -30 build/container-build.log >&2
  echo "check-container: container build failed; see build/container-build.log" >&2
  exit 1
}
echo "check-container: container build took $(( $(date +%s) - start )) s"

list() { (cd "$1" && find . -type f \( -name '*.html' -o -name '*.svg' \) | sort); }
if ! diff <(list build/site) <(list "$OUT") >build/container-diff.txt; then
  echo "check-container: the container site differs from the local one:" >&2
  head -40 build/container-diff.txt >&2
  exit 1
fi
# Same diagram sizes: the pinned font makes text metrics, and so the SVG sizes, machine-independent.
sizes() { for f in "$1"/ggufref/_images/mermaid/*.svg; do
  echo "$(basename "$f") $(grep -o '<svg[^>]*>' "$f" | grep -oE '(width|height)="[0-9]+"' | tr '\n' ' ')"
done; }
if ! diff <(sizes build/site) <(sizes "$OUT") >build/container-diff.txt; then
  echo "check-container: diagram sizes differ between the local and the container build:" >&2
  head -20 build/container-diff.txt >&2
  exit 1
fi
echo "check-container: OK, $(list "$OUT" | grep -c '\.html$') pages and" \
  "$(list "$OUT" | grep -c '_images/mermaid/') diagrams of the same sizes as the local build"
