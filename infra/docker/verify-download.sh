#!/bin/sh
# verify-download.sh FILE SHA256 ARG_NAME
#
# Used by the Dockerfile for every file it downloads: succeeds only when FILE's SHA-256 is the
# pinned SHA256 (64 lowercase hexadecimal digits, the build argument ARG_NAME). Fails, saying
# which argument to set, when the digest is missing, a placeholder or malformed, and when the
# file differs from it (then the image is not built: a changed download is never trusted
# silently). POSIX sh and coreutils only, as in debian:trixie-slim.
set -eu

if [ "$#" -ne 3 ]; then
  echo "usage: verify-download.sh FILE SHA256 ARG_NAME" >&2
  exit 2
fi
file=$1 digest=$2 arg=$3

if [ -z "$digest" ]; then
  echo "verify-download: build argument $arg is not set: pin the SHA-256 of $file (see the Dockerfile's comment on $arg)" >&2
  exit 1
fi
if ! printf '%s\n' "$digest" | grep -Eqx '[0-9a-f]{64}'; then
  echo "verify-download: $arg=$digest is not a SHA-256 (64 lowercase hexadecimal digits); still a placeholder? See the Dockerfile's comment on $arg" >&2
  exit 1
fi
if [ ! -f "$file" ]; then
  echo "verify-download: $file is missing" >&2
  exit 1
fi
if ! printf '%s  %s\n' "$digest" "$file" | sha256sum -c --status -; then
  actual=$(sha256sum "$file" | cut -d' ' -f1)
  echo "verify-download: $file does not match $arg: expected $digest, downloaded $actual; not trusted. If the publisher changed it, check the new file before pinning its digest (see the Dockerfile)" >&2
  exit 1
fi
echo "verify-download: $file matches $arg"
