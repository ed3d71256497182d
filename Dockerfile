# syntax=docker/dockerfile:1
# The Sluice image: both release binaries on a small Debian, run as a non-root user.
#
#   docker build -t sluice:$(git rev-parse --short HEAD) .
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
# The RDS CA bundle, so that sslmode=verify-full (the template's default) verifies an RDS server.
ADD --chmod=0644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=build /out/sluice-coordinator /out/sluice-worker /usr/local/bin/
COPY --chmod=0755 infra/docker/entrypoint.sh /usr/local/bin/sluice-entrypoint
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/sluice-entrypoint"]
CMD ["sluice-worker", "run"]
