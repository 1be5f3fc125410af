# The `galley` image: Galley (`galley server …`).
# Build from the repository root: docker build -f install/docker/galley.Dockerfile -t HUB/galley:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p galley --bin galley

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/galley /usr/local/bin/galley
ENTRYPOINT ["/usr/local/bin/galley"]
