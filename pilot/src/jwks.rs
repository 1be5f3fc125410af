//! Pilot's JWKS resolver, as Istio 1.4's: the keys of every `jwksUri` an authentication
//! Policy names are fetched by Pilot and inlined into the proxies' `jwt_authn` config, so
//! proxies never reach out to an identity provider themselves.
//!
//! - A key set is fetched when a push context first needs it (5 s timeout, no retry; the
//!   push waits for it, as 1.4's did), then cached; a Jwt with neither `jwks` nor `jwksUri` has its URI
//!   found by OpenID discovery (`ISSUER/.well-known/openid-configuration`).
//! - Every refresh interval (1.4: 20 minutes) cached sets are fetched again (3 retries, 1 s
//!   apart); a set that changed triggers a new push context. A set the current policies no
//!   longer name, or not refreshed successfully, for a week is dropped.
//! - A failed fetch keeps the last keys, is logged and counted
//!   (`pilot_jwks_resolver_network_fetch_fail_total`); a URI that has never answered is tried
//!   again at the next refresh, not at every push.
//! - HTTPS trusts the system roots plus, when given, a CA bundle (`--jwksCaFile`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use istio_api::pb::istio::authentication::v1alpha1 as authn;

use crate::metrics::Metrics;

/// How long one fetch may take (1.4's `jwksHTTPTimeOutInSec`).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unused or unrefreshable key set is kept (1.4's `JwtPubKeyEvictionDuration`).
const EVICTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Retries of a refresh fetch, and the pause between them.
const REFRESH_RETRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// 1.4's `JwtPubKeyRefreshInterval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// What a provider whose keys could not be fetched gets: no key, so every token fails.
pub const NO_KEYS: &str = r#"{"keys":[]}"#;
/// Where OpenID discovery is, under an issuer.
const OPENID_DISCOVERY: &str = "/.well-known/openid-configuration";

/// Where a Jwt's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JwksSource {
    /// Its `jwksUri`.
    Uri(String),
    /// Its issuer's OpenID discovery document.
    Issuer(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::Uri(uri) => write!(formatter, "{uri}"),
            JwksSource::Issuer(issuer) => write!(formatter, "{issuer}{OPENID_DISCOVERY}"),
        }
    }
}

/// Why a key set could not be had, or the resolver not made.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("{path}: {source}")]
    CaFile { path: String, source: rustls::pki_types::pem::Error },
    #[error("{0}: no certificate")]
    NoCaCertificate(String),
    #[error("{path}: {source}")]
    CaCertificate { path: String, source: rustls::Error },
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    #[error("{uri}: {reason}")]
    Request { uri: String, reason: String },
    #[error("{0}: no answer in {FETCH_TIMEOUT:?}")]
    Timeout(String),
    #[error("unsuccessful response from {uri:?}: status {status}")]
    Status { uri: String, status: u16 },
    #[error("{0}: the body is not UTF-8")]
    NotUtf8(String),
    #[error("{url}: not JSON: {source}")]
    NotJson { url: String, source: serde_json::Error },
    #[error("invalid jwks_uri {0} in openID discovery configuration")]
    NoJwksUri(String),
}

/// Fetched key sets by source.
pub type JwksKeys = BTreeMap<JwksSource, String>;

/// Where a Jwt's keys come from; `None` when they are inline (`jwks`).
pub fn source(jwt: &authn::Jwt) -> Option<JwksSource> {
    if !jwt.jwks.is_empty() {
        None
    } else if !jwt.jwks_uri.is_empty() {
        Some(JwksSource::Uri(jwt.jwks_uri.clone()))
    } else {
        Some(JwksSource::Issuer(jwt.issuer.clone()))
    }
}

#[derive(Debug, Clone)]
struct Entry {
    keys: String,
    last_used: Instant,
    last_refreshed: Instant,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The resolver; one per config source loop.
pub struct JwksResolver {
    client: HttpsClient,
    /// Key sets by source key.
    entries: Mutex<HashMap<JwksSource, Entry>>,
    /// Source keys whose first fetch failed, with when it was tried.
    failed: Mutex<HashMap<JwksSource, Instant>>,
    /// The sources the last push context needed: in use until the next one says otherwise.
    in_use: Mutex<std::collections::HashSet<JwksSource>>,
    metrics: Metrics,
}

impl std::fmt::Debug for JwksResolver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("JwksResolver").finish_non_exhaustive()
    }
}

/// The background task that refreshes a resolver's key sets every interval and notifies
/// `changed` when one changed; stopped when dropped.
pub(crate) struct Refresher {
    task: tokio::task::JoinHandle<()>,
}

impl Refresher {
    pub(crate) fn spawn(
        resolver: Arc<JwksResolver>,
        interval: Duration,
        changed: Arc<tokio::sync::Notify>,
    ) -> Refresher {
        let task = tokio::spawn(async move {
            // An interval of zero would spin: a second at least.
            let interval = interval.max(Duration::from_secs(1));
            loop {
                tokio::time::sleep(interval).await;
                if resolver.refresh().await {
                    changed.notify_one();
                }
            }
        });
        Refresher { task }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TLS client config: the system's roots and those of `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, JwksError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| JwksError::CaFile { path: shown.clone(), source })?;
        if certs.is_empty() {
            return Err(JwksError::NoCaCertificate(shown));
        }
        for cert in certs {
            roots.add(cert).map_err(|source| JwksError::CaCertificate { path: shown.clone(), source })?;
        }
    }
    istio_runtime::https::client_config(roots).map_err(JwksError::Tls)
}

impl JwksResolver {
    /// A resolver trusting the system roots and `ca_file`'s.
    pub(crate) fn new(ca_file: Option<&Path>, metrics: Metrics) -> Result<JwksResolver, JwksError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(JwksResolver {
            client: Client::builder(TokioExecutor::new()).build(connector),
            entries: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            in_use: Mutex::new(std::collections::HashSet::new()),
            metrics,
        })
    }

    /// The keys these Jwts need: cached ones, and those fetched now for the first time.
    /// Sources that failed before are left to the refresh.
    pub(crate) async fn resolve<'a>(&self, jwts: impl Iterator<Item = &'a authn::Jwt>) -> JwksKeys {
        let mut keys = JwksKeys::new();
        let wanted: Vec<JwksSource> = jwts.filter_map(source).collect();
        *istio_runtime::sync::lock(&self.in_use) = wanted.iter().cloned().collect();
        // Sources no policy names any more are not retried.
        istio_runtime::sync::lock(&self.failed).retain(|key, _| wanted.contains(key));
        for key in wanted {
            if keys.contains_key(&key) {
                continue;
            }
            let cached = istio_runtime::sync::lock(&self.entries).get_mut(&key).map(|entry| {
                entry.last_used = Instant::now();
                entry.keys.clone()
            });
            if let Some(cached) = cached {
                keys.insert(key, cached);
                continue;
            }
            if istio_runtime::sync::lock(&self.failed).contains_key(&key) {
                continue;
            }
            match self.fetch(&key, 0).await {
                Ok(fetched) => {
                    let now = Instant::now();
                    let entry = Entry { keys: fetched.clone(), last_used: now, last_refreshed: now };
                    istio_runtime::sync::lock(&self.entries).insert(key.clone(), entry);
                    keys.insert(key, fetched);
                }
                Err(error) => {
                    tracing::error!("Failed to fetch jwt public key from {:?}: {error}", key.to_string());
                    istio_runtime::sync::lock(&self.failed).insert(key, Instant::now());
                }
            }
        }
        keys
    }

    /// Fetches every cached key set again, and those that never answered; whether anything
    /// changed (then the proxies need a push).
    pub(crate) async fn refresh(&self) -> bool {
        let now = Instant::now();
        let in_use = istio_runtime::sync::lock(&self.in_use).clone();
        let entries: Vec<(JwksSource, Entry)> = {
            let mut entries = istio_runtime::sync::lock(&self.entries);
            for (key, entry) in entries.iter_mut() {
                if in_use.contains(key) {
                    entry.last_used = now;
                }
            }
            entries.retain(|key, entry| {
                let keep = now.duration_since(entry.last_used) < EVICTION
                    && now.duration_since(entry.last_refreshed) < EVICTION;
                if !keep {
                    tracing::info!("Removed cached JWT public key from {:?}", key.to_string());
                }
                keep
            });
            entries.iter().map(|(key, entry)| (key.clone(), entry.clone())).collect()
        };
        let never_fetched: Vec<JwksSource> = istio_runtime::sync::lock(&self.failed).keys().cloned().collect();
        let mut changed = false;
        for (key, entry) in entries {
            match self.fetch(&key, REFRESH_RETRIES).await {
                Ok(fetched) => {
                    if fetched != entry.keys {
                        tracing::info!("Updated cached JWT public key from {:?}", key.to_string());
                        changed = true;
                    }
                    if let Some(current) = istio_runtime::sync::lock(&self.entries).get_mut(&key) {
                        current.keys = fetched;
                        current.last_refreshed = Instant::now();
                    }
                }
                Err(error) => tracing::error!("Failed to refresh JWT public key from {:?}: {error}", key.to_string()),
            }
        }
        for key in never_fetched {
            if let Ok(fetched) = self.fetch(&key, 0).await {
                let now = Instant::now();
                istio_runtime::sync::lock(&self.entries)
                    .insert(key.clone(), Entry { keys: fetched, last_used: now, last_refreshed: now });
                istio_runtime::sync::lock(&self.failed).remove(&key);
                changed = true;
            }
        }
        changed
    }

    /// Fetches a key set: from its URI, or from the URI its issuer's discovery names.
    async fn fetch(&self, source: &JwksSource, retries: u32) -> Result<String, JwksError> {
        let uri = match source {
            JwksSource::Uri(uri) => uri.clone(),
            JwksSource::Issuer(issuer) => self.discover(issuer, retries).await?,
        };
        self.get(&uri, retries).await
    }

    /// The `jwks_uri` an issuer's OpenID configuration names.
    async fn discover(&self, issuer: &str, retries: u32) -> Result<String, JwksError> {
        let url = format!("{}{OPENID_DISCOVERY}", issuer.trim_end_matches('/'));
        let body = self.get(&url, retries).await?;
        let document: serde_json::Value =
            serde_json::from_str(&body).map_err(|source| JwksError::NotJson { url: url.clone(), source })?;
        document["jwks_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| JwksError::NoJwksUri(document["jwks_uri"].to_string()))
    }

    /// GETs `uri`, retrying `retries` times; the body of a 200.
    async fn get(&self, uri: &str, retries: u32) -> Result<String, JwksError> {
        let mut attempt = 0;
        loop {
            let result = self.get_once(uri).await;
            match &result {
                Ok(_) => self.metrics.jwks_fetch_success.inc(),
                Err(_) => self.metrics.jwks_fetch_fail.inc(),
            };
            if result.is_ok() || attempt >= retries {
                return result;
            }
            attempt += 1;
            tracing::warn!("Failed to GET from {uri:?}: {}. Retry in 1 seconds", result.unwrap_err());
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn get_once(&self, uri: &str) -> Result<String, JwksError> {
        let failed = |reason: String| JwksError::Request { uri: uri.to_string(), reason };
        let request = http::Request::get(uri).body(Empty::new()).map_err(|error| failed(error.to_string()))?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| JwksError::Timeout(uri.to_string()))?
            .map_err(|error| failed(format!("{error:#}")))?;
        let status = response.status();
        let body = tokio::time::timeout(FETCH_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| JwksError::Timeout(uri.to_string()))?
            .map_err(|error| failed(error.to_string()))?
            .to_bytes();
        if status != http::StatusCode::OK {
            return Err(JwksError::Status { uri: uri.to_string(), status: status.as_u16() });
        }
        String::from_utf8(body.to_vec()).map_err(|_| JwksError::NotUtf8(uri.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An identity provider on loopback: its JWKS (which the test changes), its OpenID
    /// discovery document, and a switch that makes it answer 503.
    struct Provider {
        address: std::net::SocketAddr,
        keys: Arc<Mutex<String>>,
        down: Arc<AtomicBool>,
    }

    async fn provider() -> Provider {
        let keys = Arc::new(Mutex::new(r#"{"keys":["v1"]}"#.to_string()));
        let down = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (served, switch) = (keys.clone(), down.clone());
        let app = axum::Router::new()
            .route(
                "/jwks.json",
                axum::routing::get(move || {
                    let (served, switch) = (served.clone(), switch.clone());
                    async move {
                        if switch.load(Ordering::SeqCst) {
                            Err(http::StatusCode::SERVICE_UNAVAILABLE)
                        } else {
                            Ok(istio_runtime::sync::lock(&served).clone())
                        }
                    }
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move {
                    serde_json::json!({ "jwks_uri": format!("http://{address}/jwks.json") }).to_string()
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { address, keys, down }
    }

    fn jwt(uri: &str, issuer: &str) -> authn::Jwt {
        authn::Jwt { jwks_uri: uri.to_string(), issuer: issuer.to_string(), ..Default::default() }
    }

    fn counts(metrics: &Metrics) -> (u64, u64) {
        (metrics.jwks_fetch_success.get(), metrics.jwks_fetch_fail.get())
    }

    #[tokio::test]
    async fn keys_are_fetched_once_refreshed_and_kept_when_the_provider_fails() {
        let provider = provider().await;
        let metrics = Metrics::register(&Default::default());
        let resolver = JwksResolver::new(None, metrics.clone()).expect("resolver");
        let by_uri = jwt(&format!("http://{}/jwks.json", provider.address), "");
        let source = source(&by_uri).expect("a remote source");
        let keys = resolver.resolve(std::iter::once(&by_uri)).await;
        assert_eq!(keys[&source], r#"{"keys":["v1"]}"#);
        assert_eq!(counts(&metrics), (1, 0));
        *istio_runtime::sync::lock(&provider.keys) = r#"{"keys":["v2"]}"#.to_string();
        let cached = resolver.resolve(std::iter::once(&by_uri)).await;
        assert_eq!(cached[&source], r#"{"keys":["v1"]}"#, "cached until the refresh");
        assert_eq!(counts(&metrics), (1, 0), "no fetch for a cached set");
        assert!(resolver.refresh().await, "the refresh sees the new keys");
        assert_eq!(resolver.resolve(std::iter::once(&by_uri)).await[&source], r#"{"keys":["v2"]}"#);
        assert!(!resolver.refresh().await, "unchanged keys are no change");

        provider.down.store(true, Ordering::SeqCst);
        tokio::time::pause();
        let refreshing = resolver.refresh();
        assert!(!refreshing.await, "a failed refresh changes nothing");
        tokio::time::resume();
        assert_eq!(resolver.resolve(std::iter::once(&by_uri)).await[&source], r#"{"keys":["v2"]}"#, "last keys kept");
        assert_eq!(counts(&metrics).1, 1 + REFRESH_RETRIES as u64, "each failed attempt is counted");
    }

    #[tokio::test]
    async fn issuers_without_uri_are_discovered_and_failed_sources_wait_for_the_refresh() {
        let provider = provider().await;
        let metrics = Metrics::register(&Default::default());
        let resolver = JwksResolver::new(None, metrics.clone()).expect("resolver");
        let discovered = jwt("", &format!("http://{}", provider.address));
        let keys = resolver.resolve(std::iter::once(&discovered)).await;
        assert_eq!(keys[&JwksSource::Issuer(discovered.issuer.clone())], r#"{"keys":["v1"]}"#);
        let inline = authn::Jwt { jwks: "{}".into(), ..Default::default() };
        assert!(source(&inline).is_none(), "inline keys are not fetched");

        provider.down.store(true, Ordering::SeqCst);
        let later = jwt(&format!("http://{}/jwks.json", provider.address), "");
        assert!(resolver.resolve(std::iter::once(&later)).await.is_empty(), "the first fetch failed");
        let failures = counts(&metrics).1;
        assert!(resolver.resolve(std::iter::once(&later)).await.is_empty());
        assert_eq!(counts(&metrics).1, failures, "a failed source is not fetched at every push");
        provider.down.store(false, Ordering::SeqCst);
        assert!(resolver.refresh().await, "the refresh fetches it");
        assert_eq!(resolver.resolve(std::iter::once(&later)).await.len(), 1);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "no certificates here").expect("write");
        let error = tls_config(Some(&empty)).expect_err("refused").to_string();
        assert!(error.contains("ca.pem"), "{error}");
    }
}
