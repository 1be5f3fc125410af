# The `citadel` image: Citadel, the CA and the workload Secret controller.
# Build from the repository root: docker build -f install/docker/citadel.Dockerfile -t HUB/citadel:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p citadel --bin citadel

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/citadel /usr/local/bin/citadel
# 1.4's path, so `kubectl exec … istio_ca` habits work.
RUN ln -s citadel /usr/local/bin/istio_ca
ENTRYPOINT ["/usr/local/bin/istio_ca"]
