# The `examples-bookinfo-reviews-v2` image: Bookinfo's reviews v2 (black stars).
# Build from the repository root: docker build -f install/docker/examples-bookinfo-reviews-v2.Dockerfile -t HUB/examples-bookinfo-reviews-v2:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p bookinfo --bin bookinfo

FROM debian:bookworm-slim
COPY --from=build /src/target/release/bookinfo /usr/local/bin/bookinfo
ENV ENABLE_RATINGS=true STAR_COLOR=black
ENTRYPOINT ["/usr/local/bin/bookinfo", "reviews"]
