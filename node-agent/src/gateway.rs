//! The ingress-gateway mode (1.4's `--enableIngressGatewaySDS`, the gateway's `ingress-sds`
//! container): the Secrets of the gateway's namespace, followed through the store, served by
//! name on the gateway's own SDS socket (`/var/run/ingress_gateway/sds`) so that a Gateway
//! server's `credentialName` finds its certificate, and a rotated Secret reaches the running
//! gateway without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use istio_config::object::Object;
use istio_config::store::{Event, Store};
use istio_sds::gateway::{GatewaySecretTable, GatewaySecrets};
use istio_sds::Watch;
use tokio::sync::watch;

/// A Secret's data, decoded: `data` is base64 as the API serves it; `stringData` (as written
/// by hand) is taken as it is and wins, as the API server merges it.
pub fn secret_data(secret: &Object) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut decoded = BTreeMap::new();
    if let Some(data) = secret.body.get("data").and_then(|data| data.as_object()) {
        for (key, value) in data {
            let text = value.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|error| format!("data {key}: not base64: {error}"))?;
            decoded.insert(key.clone(), bytes);
        }
    }
    if let Some(data) = secret.body.get("stringData").and_then(|data| data.as_object()) {
        for (key, value) in data {
            decoded.insert(key.clone(), value.as_str().unwrap_or_default().as_bytes().to_vec());
        }
    }
    Ok(decoded)
}

/// Follows the Secrets of `namespace` in the store's events, publishing the gateway secrets
/// they hold whenever those change. Ends when the watch ends or nobody follows the result.
pub fn follow(mut events: tokio::sync::mpsc::UnboundedReceiver<Event>, namespace: String) -> Watch<GatewaySecrets> {
    let (sender, receiver) = watch::channel::<Option<Arc<GatewaySecrets>>>(None);
    tokio::spawn(async move {
        let mut table = GatewaySecretTable::default();
        let mut synced = false;
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = sender.closed() => return,
            };
            let Some(event) = event else {
                tracing::warn!("the store's watch ended; gateway secrets stay as they are");
                return;
            };
            match event {
                Event::Added(secret) | Event::Modified(secret) if is_secret_in(&secret, &namespace) => {
                    let name = secret.name().to_string();
                    let outcome = secret_data(&secret)
                        .map_err(|error| format!("Secret {namespace}/{name}: {error}"))
                        .and_then(|data| table.update(&name, &data).map_err(|error| error.to_string()));
                    match outcome {
                        Ok(()) => tracing::debug!(%name, "gateway secret read"),
                        Err(error) => tracing::warn!("{error}; what it held before is still served"),
                    }
                }
                Event::Deleted(secret) if is_secret_in(&secret, &namespace) => {
                    tracing::info!(name = %secret.name(), "gateway secret deleted");
                    table.remove(secret.name());
                }
                Event::Synced => synced = true,
                _ => continue,
            }
            if !synced {
                continue;
            }
            let served = sender.borrow().clone();
            if let Some(next) = table.snapshot(served.as_deref()) {
                tracing::info!(
                    version = next.version,
                    secrets = ?next.secrets.keys().collect::<Vec<_>>(),
                    "serving gateway secrets"
                );
                sender.send_replace(Some(Arc::new(next)));
            }
        }
    });
    receiver
}

fn is_secret_in(object: &Object, namespace: &str) -> bool {
    object.kind == "Secret" && object.namespace() == namespace
}

/// Serves the Secrets of `namespace` on `socket` until `shutdown` resolves.
pub async fn run(
    socket: &std::path::Path,
    namespace: &str,
    store: &dyn Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secrets = follow(store.watch(), namespace.to_string());
    let server = istio_sds::server::serve_unix(socket, istio_sds::SharedSecrets(secrets), shutdown).await?;
    println!("node-agent: gateway SDS on {}", socket.display());
    tracing::info!("serving the Secrets of namespace {namespace} to the gateway on {}", socket.display());
    server.await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secret(namespace: &str, name: &str, body: serde_json::Value) -> Object {
        let mut object = Object::new("v1", "Secret", Some(namespace), name);
        object.body = body.as_object().cloned().expect("a map");
        object
    }

    #[test]
    fn data_is_decoded_and_string_data_wins() {
        let object = secret(
            "istio-system",
            "s",
            json!({"data": {"cert": "Y2VydA==", "key": "a2V5"}, "stringData": {"key": "plain"}}),
        );
        let data = secret_data(&object).expect("decoded");
        assert_eq!(data["cert"], b"cert");
        assert_eq!(data["key"], b"plain");
        let broken = secret("istio-system", "s", json!({"data": {"cert": "%%%"}}));
        assert!(secret_data(&broken).expect_err("not base64").starts_with("data cert: not base64"));
    }

    #[tokio::test]
    async fn only_the_namespaces_secrets_are_served_once_synced() {
        let ca = istio_pki::ca::CertificateAuthority::self_signed("example.com").expect("CA");
        let issued = ca.issue(&istio_pki::ca::LeafRequest::for_names(["httpbin.example.com"])).expect("leaf");
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let body = json!({"data": {"cert": encode(&issued.cert_chain_pem), "key": encode(&issued.key_pem)}});
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut secrets = follow(receiver, "istio-system".into());
        events.send(Event::Added(secret("istio-system", "httpbin-credential", body.clone()))).expect("send");
        events.send(Event::Added(secret("default", "elsewhere", body.clone()))).expect("send");
        events.send(Event::Synced).expect("send");
        secrets.changed().await.expect("published");
        let served = secrets.borrow_and_update().clone().expect("a set");
        assert_eq!(served.secrets.keys().collect::<Vec<_>>(), ["httpbin-credential"]);
        events.send(Event::Deleted(secret("istio-system", "httpbin-credential", body))).expect("send");
        secrets.changed().await.expect("published");
        assert!(secrets.borrow().as_ref().expect("a set").secrets.is_empty());
    }
}
