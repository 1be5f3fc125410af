# The `tcp-echo-server` image: the tcp-echo sample (args: PORTS PREFIX).
# Build from the repository root: docker build -f install/docker/tcp-echo-server.Dockerfile -t HUB/tcp-echo-server:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p tcp-echo --bin tcp-echo

FROM debian:bookworm-slim
COPY --from=build /src/target/release/tcp-echo /usr/local/bin/tcp-echo
ENTRYPOINT ["/usr/local/bin/tcp-echo"]
