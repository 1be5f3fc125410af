# The `examples-helloworld-v2` image: Istio's helloworld sample, version v2 (the httpbin binary
# serving `helloworld:app` on port 5000, as 1.4's flask image did).
# Build from the repository root: docker build -f install/docker/examples-helloworld-v2.Dockerfile -t HUB/examples-helloworld-v2:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p httpbin --bin httpbin

FROM debian:bookworm-slim
COPY --from=build /src/target/release/httpbin /usr/local/bin/httpbin
ENV SERVICE_VERSION=v2
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/httpbin", "-b", "0.0.0.0:5000", "helloworld:app"]
