//! A scripted Kubernetes API server on loopback, for the command-line paths that talk to a
//! cluster (no registry ships a kube-apiserver). It serves a fixed set of pods — get, and list
//! with an equality label selector — and the pods' `portforward` subresource over WebSocket with
//! the API server's `v4.channel.k8s.io` framing: per forwarded port a data and an error channel,
//! each opened by a frame carrying the port, then data frames prefixed with the channel number.
//! Each forwarded stream is relayed to a loopback address standing for the pod's port; a port
//! with nothing behind it gets the error channel's message, as a kubelet sends. Anything else is
//! Every other resource path is served by an object store (`kube_store`): get, list, server-side
//! apply and delete, with the little a real cluster's controllers add (CRDs established,
//! workloads rolled out) and scripted failures. `/version` answers as a 1.29 API server does.
//! Every request line is recorded for the test to inspect.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::kube_store::{query_value, ResourcePath, Script, Store};

/// A pod the fake API server knows, and where each of its ports really is.
#[derive(Clone, Debug)]
pub struct FakePod {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub phase: String,
    /// Pod port → loopback address that answers for it.
    pub ports: BTreeMap<u16, SocketAddr>,
}

impl FakePod {
    /// A running pod with `labels` (`"app=prometheus"`, comma-separated).
    pub fn running(namespace: &str, name: &str, labels: &str) -> FakePod {
        let labels = labels
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        FakePod {
            name: name.into(),
            namespace: namespace.into(),
            labels,
            phase: "Running".into(),
            ports: BTreeMap::new(),
        }
    }

    /// Forwards pod port `port` to `target`.
    pub fn forwarding(mut self, port: u16, target: SocketAddr) -> FakePod {
        self.ports.insert(port, target);
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels,
                         "resourceVersion": "1", "uid": format!("uid-{}", self.name)},
            "spec": {"containers": [{"name": "main", "image": "scratch"}]},
            "status": {"phase": self.phase},
        })
    }

    fn matches(&self, selector: &str) -> bool {
        selector.split(',').filter(|term| !term.is_empty()).all(|term| {
            term.split_once('=').is_some_and(|(key, value)| self.labels.get(key).is_some_and(|v| v == value))
        })
    }
}

/// The running fake API server; stops when dropped.
pub struct FakeApiServer {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    store: Arc<Mutex<Store>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Serves `pods` on a free loopback port, on a thread of its own.
    pub fn start(pods: Vec<FakePod>) -> FakeApiServer {
        FakeApiServer::start_with(pods, Script::default())
    }

    /// Serves `pods`, and an object store playing `script`.
    pub fn start_with(pods: Vec<FakePod>, script: Script) -> FakeApiServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fake API server");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let store = Arc::new(Mutex::new(Store::new(script)));
        let state = Arc::new(State { pods, requests: requests.clone(), store: store.clone() });
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    () = accept_loop(listener, state) => {}
                    _ = stopped => {}
                }
            });
        });
        FakeApiServer { address, requests, store, stop: Some(stop), thread: Some(thread) }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Writes a kubeconfig for this server (context `fake`) into `dir` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.url()
        );
        std::fs::write(&path, text).expect("writing the kubeconfig");
        path
    }

    /// `METHOD path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests").clone()
    }

    /// Every object in the store.
    pub fn objects(&self) -> Vec<Value> {
        self.store.lock().expect("store").objects()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    pods: Vec<FakePod>,
    requests: Arc<Mutex<Vec<String>>>,
    store: Arc<Mutex<Store>>,
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    while let Ok((socket, _)) = listener.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .with_upgrades()
                .await;
        });
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn not_found(what: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{what} not found"),
                "reason": "NotFound", "code": 404}),
    )
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    state.requests.lock().expect("requests").push(format!("{} {path}?{query}", request.method()));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", "namespaces", namespace, "pods"] => {
            let selector = query_value(&query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = state
                .pods
                .iter()
                .filter(|pod| pod.namespace == *namespace && pod.matches(&selector))
                .map(FakePod::to_json)
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ["api", "v1", "namespaces", namespace, "pods", name] => {
            match state.pods.iter().find(|pod| pod.namespace == *namespace && pod.name == *name) {
                Some(pod) => json_response(StatusCode::OK, &pod.to_json()),
                None => not_found(&format!("pods \"{name}\"")),
            }
        }
        ["api", "v1", "namespaces", namespace, "pods", name, "portforward"] => {
            let Some(pod) = state.pods.iter().find(|pod| pod.namespace == *namespace && pod.name == *name) else {
                return not_found(&format!("pods \"{name}\""));
            };
            let ports: Vec<u16> = query_value(&query, "ports")
                .unwrap_or_default()
                .split(',')
                .filter_map(|port| port.trim().parse().ok())
                .collect();
            upgrade_to_port_forward(request, pod.clone(), ports)
        }
        ["apis", "admissionregistration.k8s.io", "v1"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "admissionregistration.k8s.io/v1",
                    "resources": [
                        {"name": "mutatingwebhookconfigurations", "singularName": "", "namespaced": false,
                         "kind": "MutatingWebhookConfiguration", "verbs": ["create", "get", "list", "patch", "delete"]},
                        {"name": "validatingwebhookconfigurations", "singularName": "", "namespaced": false,
                         "kind": "ValidatingWebhookConfiguration", "verbs": ["create", "get", "list", "patch", "delete"]}]}),
        ),
        ["version"] => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "29", "gitVersion": "v1.29.0", "platform": "linux/amd64"}),
        ),
        _ => match ResourcePath::parse(&path) {
            Some(resource) => {
                let method = request.method().to_string();
                let body = match request.into_body().collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => Bytes::new(),
                };
                let (status, value) = state.store.lock().expect("store").handle(&method, &resource, &query, &body);
                json_response(status, &value)
            }
            None => not_found(&path),
        },
    }
}

/// Answers the WebSocket handshake and relays the streams once the connection is upgraded.
fn upgrade_to_port_forward(request: Request<Incoming>, pod: FakePod, ports: Vec<u16>) -> Response<Full<Bytes>> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"kind": "Status", "message": "not a WebSocket request"}),
        );
    };
    let offered = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !offered.split(',').any(|protocol| protocol.trim() == "v4.channel.k8s.io") || ports.len() != 1 {
        return json_response(StatusCode::BAD_REQUEST, &json!({"kind": "Status", "message": "unsupported request"}));
    }
    let port = ports[0];
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else { return };
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(socket, pod, port).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", "v4.channel.k8s.io")
        .body(Full::new(Bytes::new()))
        .expect("response")
}

/// One forwarded port: channel 0 carries data, channel 1 errors.
async fn relay<S>(socket: WebSocketStream<S>, pod: FakePod, port: u16)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = socket.split();
    let [low, high] = port.to_le_bytes();
    for channel in [0u8, 1] {
        if to_client.send(Message::binary(vec![channel, low, high])).await.is_err() {
            return;
        }
    }
    let target = pod.ports.get(&port).copied();
    let connected = match target {
        Some(target) => tokio::net::TcpStream::connect(target).await.ok(),
        None => None,
    };
    let Some(upstream) = connected else {
        let message = format!(
            "error forwarding port {port} to pod {}, uid : failed to connect to localhost:{port}: connection refused",
            pod.name
        );
        let mut frame = vec![1u8];
        frame.extend_from_slice(message.as_bytes());
        let _ = to_client.send(Message::binary(frame)).await;
        // The stream is unusable now; the connection ends when the client closes it.
        while let Some(Ok(message)) = from_client.next().await {
            if message.is_close() {
                break;
            }
        }
        let _ = to_client.send(Message::Close(None)).await;
        return;
    };
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let client_to_pod = async {
        while let Some(Ok(message)) = from_client.next().await {
            match message {
                Message::Binary(bytes) if bytes.first() == Some(&0) => {
                    let Ok(()) = upstream_write.write_all(&bytes[1..]).await else { break };
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    let pod_to_client = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match upstream_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let mut frame = Vec::with_capacity(read + 1);
                    frame.push(0u8);
                    frame.extend_from_slice(&buffer[..read]);
                    if to_client.send(Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.send(Message::Close(None)).await;
    };
    tokio::join!(client_to_pod, pod_to_client);
}
