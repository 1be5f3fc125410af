# The `proxyv2` image: the sidecar and gateway proxy: `proxy` as pilot-agent (args `proxy sidecar|router …`), with `istio-iptables` for the init container.
# Build from the repository root: docker build -f install/docker/proxyv2.Dockerfile -t HUB/proxyv2:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p proxy --bin proxy

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables iproute2 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/proxy /usr/local/bin/proxy
RUN ln -s proxy /usr/local/bin/pilot-agent \
    && printf '#!/bin/sh\nexec /usr/local/bin/proxy iptables "$@"\n' > /usr/local/bin/istio-iptables \
    && printf '#!/bin/sh\nexec /usr/local/bin/proxy clean-iptables "$@"\n' > /usr/local/bin/istio-clean-iptables \
    && chmod +x /usr/local/bin/istio-iptables /usr/local/bin/istio-clean-iptables
ENTRYPOINT ["/usr/local/bin/pilot-agent"]
