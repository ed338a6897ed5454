# syntax=docker/dockerfile:1
# The apm-demo service. Build stage: the Rust toolchain, with cargo's registry and target directory
# in BuildKit caches, so a change to the code rebuilds the crate, not its dependencies. Runtime stage:
# Debian slim with the binary only, run as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin apm-demo \
    && cp target/release/apm-demo /usr/local/bin/apm-demo

FROM debian:bookworm-slim
# curl is only for the container health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/apm-demo /usr/local/bin/apm-demo
USER 10001
ENV HOST=0.0.0.0 PORT=5050 LOG_FORMAT=json
EXPOSE 5050
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:5050/health"]
ENTRYPOINT ["/usr/local/bin/apm-demo"]
