#!/usr/bin/env bash
# Put Debian's dataset-fashion-mnist (IDX .gz files, MIT licence) where splitfit looks:
# DEST/fashion-mnist/. Uses the installed package when present, otherwise extracts the .deb
# (apt-get download + dpkg-deb -x), which needs no root. Idempotent.
set -euo pipefail
dest="${1:-vendor}"
out="$dest/fashion-mnist"
mkdir -p "$out"
have() { [ -f "$1/train-images-idx3-ubyte.gz" ] && [ -f "$1/t10k-labels-idx1-ubyte.gz" ]; }
find_idx() { find "$1" -name 'train-images-idx3-ubyte.gz' -printf '%h\n' 2>/dev/null | head -n 1; }
if have "$out"; then exit 0; fi
src=""
if [ -d /usr/share/dataset-fashion-mnist ]; then src=$(find_idx /usr/share/dataset-fashion-mnist); fi
if [ -z "$src" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ( cd "$tmp" && { apt-get download dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get download dataset-fashion-mnist; }; } )
  deb=$(ls "$tmp"/dataset-fashion-mnist_*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$deb" ]; then
    echo "error: could not obtain Debian package dataset-fashion-mnist (apt-get download failed)" >&2
    exit 1
  fi
  dpkg-deb -x "$deb" "$tmp/x"
  src=$(find_idx "$tmp/x")
  [ -n "$src" ] || { echo "error: no IDX files inside $deb" >&2; exit 1; }
  cp "$src"/*-ubyte.gz "$out"/
else
  cp "$src"/*-ubyte.gz "$out"/
fi
have "$out" || { echo "error: Fashion-MNIST files incomplete in $out" >&2; exit 1; }
echo "Fashion-MNIST ready in $out"
