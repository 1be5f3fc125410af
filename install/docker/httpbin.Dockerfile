# The `httpbin` image: the httpbin sample (the upstream kennethreitz/httpbin image works as well).
# Build from the repository root: docker build -f install/docker/httpbin.Dockerfile -t HUB/httpbin:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p httpbin --bin httpbin

FROM debian:bookworm-slim
COPY --from=build /src/target/release/httpbin /usr/local/bin/httpbin
RUN ln -s httpbin /usr/local/bin/gunicorn
ENTRYPOINT ["/usr/local/bin/httpbin"]
