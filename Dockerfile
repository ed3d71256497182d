# syntax=docker/dockerfile:1
# The Sluice image: both release binaries on a small Debian, run as a non-root user.
#
#   docker build -t sluice:$(git rev-parse --short HEAD) .
#
# (with --build-arg RDS_CA_BUNDLE_SHA256=<digest> as long as that digest is not pinned below; the
# build refuses to run without it).
#
# README.md, "Deploying to AWS", says how to push it to ECR. The final image holds the two
# binaries, the entrypoint script, ca-certificates and nothing else: no toolchain, no sources,
# no credentials (the build needs none; secrets reach the container at run time only).

# Build: the toolchain the locked dependencies need (Rust >= 1.94), on the same Debian release
# as the runtime so the binaries link against the same glibc.
FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/sluice-coordinator target/release/sluice-worker /out/

# The RDS CA bundle, so that sslmode=verify-full (the template's default) verifies an RDS server.
# It is downloaded, then verified against the SHA-256 pinned in RDS_CA_BUNDLE_SHA256: the build
# fails when that digest is not given, is a placeholder, or does not match what was downloaded,
# so the image never trusts certificates nobody checked.
#
# Pinning or updating the digest (first build, or when AWS publishes a new bundle, which the
# build then refuses):
#   1. Fetch it:  curl -fsSLO https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
#   2. Check it is AWS's: fetch it again from another network and compare; list what it holds,
#      openssl crl2pkcs7 -nocrl -certfile global-bundle.pem | openssl pkcs7 -print_certs -noout
#      (only "Amazon RDS <region> Root CA" issuers and subjects, none expired), and compare with
#      the bundle of the image deployed now: a rotation adds CAs, it does not replace them all.
#   3. sha256sum global-bundle.pem, and set the value below in a commit of its own, so that the
#      change of trust is reviewed (or pass --build-arg RDS_CA_BUNDLE_SHA256=... for one build).
FROM debian:trixie-slim AS rds-ca
ARG RDS_CA_BUNDLE_SHA256=
COPY --chmod=0755 infra/docker/verify-download.sh /usr/local/bin/verify-download
ADD https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /rds-ca/global-bundle.pem
RUN verify-download /rds-ca/global-bundle.pem "$RDS_CA_BUNDLE_SHA256" RDS_CA_BUNDLE_SHA256

# Runtime.
FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sluice \
 && mkdir -p /var/spool/sluice && chown sluice:sluice /var/spool/sluice && chmod 0700 /var/spool/sluice
# The worker spools each Parquet file here while it reads it (the root filesystem is read-only on
# ECS): a volume, so that ECS mounts task storage here with this owner (the template mounts it).
ENV TMPDIR=/var/spool/sluice
VOLUME ["/var/spool/sluice"]
# The RDS CA bundle, verified in its own stage above.
COPY --from=rds-ca --chmod=0644 /rds-ca/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=build /out/sluice-coordinator /out/sluice-worker /usr/local/bin/
COPY --chmod=0755 infra/docker/entrypoint.sh /usr/local/bin/sluice-entrypoint
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/sluice-entrypoint"]
CMD ["sluice-worker", "run"]
