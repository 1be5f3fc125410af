# The `node-agent-k8s` image: the SDS node agent of the `sds` profile.
# Build from the repository root: docker build -f install/docker/node-agent-k8s.Dockerfile -t HUB/node-agent-k8s:TAG .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p node-agent --bin node-agent

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/node-agent /usr/local/bin/node-agent
# 1.4's path, so `kubectl exec … node_agent_k8s` habits work.
RUN ln -s node-agent /usr/local/bin/node_agent_k8s
ENTRYPOINT ["/usr/local/bin/node_agent_k8s"]
