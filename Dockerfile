# Build: a release binary with the migrations embedded.
FROM rust:1-bookworm AS build
# build.rs fetches GraphiQL's published files with npm.
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mini-compete

# Run: a small image with just the binary.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --no-create-home app
COPY --from=build /src/target/release/mini-compete /usr/local/bin/mini-compete
USER app
ENV BIND_ADDR=0.0.0.0:3000
EXPOSE 3000
CMD ["mini-compete", "serve"]
