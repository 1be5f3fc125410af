# The `mixer` image: Mixer, as 1.4's (`mixs server`; the manifest's args are the server's flags).
# Build from the repository root: docker build -f install/docker/mixer.Dockerfile -t HUB/mixer:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p mixer --bin mixs

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mixs /usr/local/bin/mixs
ENTRYPOINT ["/usr/local/bin/mixs", "server"]
