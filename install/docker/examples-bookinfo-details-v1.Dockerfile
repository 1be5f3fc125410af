# The `examples-bookinfo-details-v1` image: Bookinfo's details.
# Build from the repository root: docker build -f install/docker/examples-bookinfo-details-v1.Dockerfile -t HUB/examples-bookinfo-details-v1:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p bookinfo --bin bookinfo

FROM debian:bookworm-slim
COPY --from=build /src/target/release/bookinfo /usr/local/bin/bookinfo
ENTRYPOINT ["/usr/local/bin/bookinfo", "details"]
