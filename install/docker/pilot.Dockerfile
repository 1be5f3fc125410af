# The `pilot` image: Pilot (`pilot discovery …`).
# Build from the repository root: docker build -f install/docker/pilot.Dockerfile -t HUB/pilot:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p pilot --bin pilot

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/pilot /usr/local/bin/pilot
# 1.4's path, so `kubectl exec … pilot-discovery` habits work.
RUN ln -s pilot /usr/local/bin/pilot-discovery
ENTRYPOINT ["/usr/local/bin/pilot-discovery"]
