# syntax=docker/dockerfile:1
#
# shoal — container image.
#
#   docker build -t shoal:latest .            # BuildKit (default in Docker 23+)
#   docker run --rm -p 6333:6333 -v shoal-data:/var/lib/shoal shoal:latest
#
# Two stages: a full Rust toolchain compiles the `shoal` binary; the runtime
# image is debian-slim with only that binary and CA certificates, running as
# the unprivileged user 10001 (the uid/gid the Kubernetes manifests expect).

# Keep in step with the toolchain the project is developed and tested with.
ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# Dependency caching uses BuildKit cache mounts rather than the "dummy main.rs"
# trick: the workspace has a library, benches/, and a second member (the
# benchmark binary in benches/shoal-bench), and a dummy build has to mirror
# every target that the manifests declare or that cargo discovers, or cargo
# refuses them. With cache
# mounts the cargo registry and the target directory persist between builds,
# so a source change recompiles only the shoal crate; the dependencies stay
# compiled.
# .dockerignore keeps target/, data/, .venv/ and .git/ out of the context.
COPY . .

# --locked: build exactly the versions in Cargo.lock (fails if it is stale).
# The target dir is a cache mount, which is not part of the image, so the
# binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --bin shoal \
    && install -D -m 0755 target/release/shoal /out/shoal

# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: system trust store for any TLS the node does (the in-cluster
# API server's CA comes with the service account token, not from here).
# Versions are not pinned: bookworm point releases replace the exact versions
# (security fixes), so a pin would break the build rather than make it safer.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Fixed uid/gid 10001, matching runAsUser/runAsGroup/fsGroup in
# deploy/base/statefulset.yaml. No login shell, no home directory of its own.
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/shoal --shell /usr/sbin/nologin shoal \
    && mkdir -p /var/lib/shoal \
    && chown 10001:10001 /var/lib/shoal \
    && chmod 0750 /var/lib/shoal

COPY --from=builder /out/shoal /usr/local/bin/shoal

# Everything durable lives under SHOAL_DATA_DIR (the PVC in Kubernetes, a
# named volume with `docker run -v`).
ENV SHOAL_DATA_DIR=/var/lib/shoal \
    SHOAL_LISTEN=0.0.0.0:6333
VOLUME ["/var/lib/shoal"]
WORKDIR /var/lib/shoal

# 6333: Qdrant-compatible REST API. 6335: node-to-node traffic.
EXPOSE 6333 6335

USER 10001:10001

# Exec form: shoal is PID 1 and receives SIGTERM directly for a clean shutdown.
ENTRYPOINT ["/usr/local/bin/shoal"]
