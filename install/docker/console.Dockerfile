# The `console` image: the mesh console (`istio-console`), the optional `MeshConsole` addon.
# Build from the repository root: docker build -f install/docker/console.Dockerfile -t HUB/console:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p istio-console --bin istio-console

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/istio-console /usr/local/bin/istio-console
ENTRYPOINT ["/usr/local/bin/istio-console"]
