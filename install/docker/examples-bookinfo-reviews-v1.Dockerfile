# The `examples-bookinfo-reviews-v1` image: Bookinfo's reviews v1 (no ratings).
# Build from the repository root: docker build -f install/docker/examples-bookinfo-reviews-v1.Dockerfile -t HUB/examples-bookinfo-reviews-v1:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p bookinfo --bin bookinfo

FROM debian:bookworm-slim
COPY --from=build /src/target/release/bookinfo /usr/local/bin/bookinfo
ENV ENABLE_RATINGS=false
ENTRYPOINT ["/usr/local/bin/bookinfo", "reviews"]
