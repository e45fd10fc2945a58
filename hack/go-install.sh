#!/usr/bin/env bash
# go-install.sh TARGET PACKAGE VERSION: installs PACKAGE@VERSION as the file
# TARGET (a versioned name in bin/, which the Makefile links to), so tool
# versions are pinned and a version bump reinstalls.
set -euo pipefail
target=$1 pkg=$2 version=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "Installing $pkg@$version" >&2
GOBIN=$tmp GOFLAGS=-mod=mod go install "$pkg@$version"
mkdir -p "$(dirname "$target")"
mv "$tmp/$(basename "$pkg")" "$target"
