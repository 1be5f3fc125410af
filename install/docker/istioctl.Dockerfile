# The `istioctl` image: istioctl.
# Build from the repository root: docker build -f install/docker/istioctl.Dockerfile -t HUB/istioctl:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p istioctl --bin istioctl

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates iproute2 iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/istioctl /usr/local/bin/istioctl
ENTRYPOINT ["/usr/local/bin/istioctl"]
