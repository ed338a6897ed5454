# The apm-demo service. Build stage: the Rust toolchain, with cargo's registry and target directory
# in BuildKit cache mounts, so a change to the code rebuilds the crate, not its dependencies. Runtime
# stage: Debian slim with the binary only, run as a non-root user.
# (No `# syntax=` line: BuildKit's built-in frontend handles the cache mounts, and the line would make
# every build fetch a frontend image first.)

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Line tables are dropped (CARGO_PROFILE_RELEASE_STRIP): they are for profiling on a workstation and
# double the binary; symbols stay, so a panic's backtrace still names its functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin apm-demo \
    && cp target/release/apm-demo /usr/local/bin/apm-demo

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/apm-demo /usr/local/bin/apm-demo
USER 10001
ENV HOST=0.0.0.0 PORT=5050 LOG_FORMAT=json
EXPOSE 5050
# The binary asks its own /health (no curl in the image).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/apm-demo", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/apm-demo"]
