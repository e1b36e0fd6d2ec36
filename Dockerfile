# A release binary with the migrations and GraphiQL embedded, built in layers that keep
# the dependencies cached: a code change rebuilds only the last `cargo build`.
# The Rust version is the one the project is built and tested with (`rust-version` in
# Cargo.toml is the least it needs).
FROM rust:1.95.0-bookworm AS chef
# build.rs fetches GraphiQL's published files with npm.
RUN apt-get update && apt-get install -y --no-install-recommends npm \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The dependency list only: this layer changes when Cargo.toml or Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin mini-compete
COPY . .
RUN cargo build --release --locked --bin mini-compete

# Run: a small image with just the binary (also the worker's: `mini-compete worker`).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --no-create-home app
COPY --from=build /src/target/release/mini-compete /usr/local/bin/mini-compete
USER app
ENV BIND_ADDR=0.0.0.0:3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD ["mini-compete", "healthcheck"]
CMD ["mini-compete", "serve"]
