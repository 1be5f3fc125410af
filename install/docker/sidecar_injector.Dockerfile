# The `sidecar_injector` image: the sidecar injector webhook.
# Build from the repository root: docker build -f install/docker/sidecar_injector.Dockerfile -t HUB/sidecar_injector:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p sidecar-injector --bin sidecar-injector

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sidecar-injector /usr/local/bin/sidecar-injector
ENTRYPOINT ["/usr/local/bin/sidecar-injector"]
