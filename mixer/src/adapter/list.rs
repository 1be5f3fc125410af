//! `listchecker`: whitelists and blacklists of strings, case-insensitive strings, IP ranges or
//! regexes, from the handler's `overrides` and, with `providerUrl`, from a URL fetched again
//! every `refreshInterval` (a list not refreshed within `ttl` is dropped).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use istio_api::pb::adapter::list::config::params::ListEntryType;
use istio_api::pb::adapter::list::config::Params;
use istio_attribute::{value::ip_from_bytes, Value};

use super::api::{decode_params, duration, has_field, AdapterError, BuildContext, BuildError, CheckResult, Handler};

/// The proto the handler\'s params decode into.
const PARAMS: &str = "adapter.list.config.Params";
use crate::status::{Status, INVALID_ARGUMENT, PERMISSION_DENIED};
use crate::template::Instance;

/// The entries of a list, parsed for their kind.
#[derive(Debug, Clone)]
enum Entries {
    Strings(HashSet<String>),
    Ranges(Vec<ipnet::IpNet>),
    Patterns(Vec<regex::Regex>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Strings,
    CaseInsensitive,
    Addresses,
    Regex,
}

#[derive(Debug)]
struct Settings {
    kind: Kind,
    blacklist: bool,
    overrides: Vec<String>,
    provider_url: String,
    refresh_interval: Duration,
    ttl: Duration,
    caching_interval: Duration,
    caching_use_count: i32,
}

/// What the list holds now, and what went wrong fetching it last.
#[derive(Debug, Default)]
struct State {
    entries: Option<Entries>,
    fetched_at: Option<Instant>,
    body_digest: Option<u64>,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct ListChecker {
    settings: Arc<Settings>,
    state: Arc<Mutex<State>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ListChecker {
    fn drop(&mut self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}

fn settings(context: &BuildContext<'_>) -> Result<Settings, BuildError> {
    let params: Params = decode_params(PARAMS, context.params)?;
    let given = |json: &str, proto: &str| has_field(context.params, json, proto);
    let kind = match ListEntryType::try_from(params.entry_type).unwrap_or(ListEntryType::Strings) {
        ListEntryType::Strings => Kind::Strings,
        ListEntryType::CaseInsensitiveStrings => Kind::CaseInsensitive,
        ListEntryType::IpAddresses => Kind::Addresses,
        ListEntryType::Regex => Kind::Regex,
    };
    let settings = Settings {
        kind,
        blacklist: params.blacklist,
        overrides: params.overrides.clone(),
        provider_url: params.provider_url.clone(),
        refresh_interval: if given("refreshInterval", "refresh_interval") {
            duration(params.refresh_interval.as_ref())
        } else {
            Duration::from_secs(60)
        },
        ttl: if given("ttl", "ttl") { duration(params.ttl.as_ref()) } else { Duration::from_secs(300) },
        caching_interval: if given("cachingInterval", "caching_interval") {
            duration(params.caching_interval.as_ref())
        } else {
            Duration::from_secs(300)
        },
        caching_use_count: if given("cachingUseCount", "caching_use_count") { params.caching_use_count } else { 10000 },
    };
    let mut errors = Vec::new();
    if !settings.provider_url.is_empty() {
        match settings.provider_url.parse::<http::Uri>() {
            Err(error) => errors.push(("providerUrl".to_string(), error.to_string())),
            Ok(uri) if uri.scheme().is_none() || uri.host().is_none() => {
                errors.push(("providerUrl".to_string(), "URL scheme and host cannot be empty".to_string()))
            }
            Ok(_) => {}
        }
        if settings.refresh_interval < Duration::from_secs(1) {
            errors.push((
                "refreshInterval".to_string(),
                format!("refresh interval must be at least 1 second, it is {}", show(settings.refresh_interval)),
            ));
        }
        if settings.ttl < settings.refresh_interval {
            errors.push((
                "ttl".to_string(),
                format!(
                    "ttl must be > refreshInterval, ttl is {} and refreshInterval is {}",
                    show(settings.ttl),
                    show(settings.refresh_interval)
                ),
            ));
        }
    }
    if settings.caching_use_count < 0 {
        errors.push((
            "cachingUseCount".to_string(),
            format!("caching use count must be >= 0, it is {}", settings.caching_use_count),
        ));
    }
    if let Err(error) = parse_entries(kind, &settings.overrides) {
        errors.push(("overrides".to_string(), error));
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(BuildError::Invalid(errors))
    }
}

fn show(value: Duration) -> String {
    istio_duration::format(value)
}

/// Parses entries of a kind; the error names the first bad one as 1.4 did.
fn parse_entries(kind: Kind, entries: &[String]) -> Result<Entries, String> {
    match kind {
        Kind::Strings => Ok(Entries::Strings(entries.iter().filter(|e| !e.is_empty()).cloned().collect())),
        Kind::CaseInsensitive => {
            Ok(Entries::Strings(entries.iter().filter(|e| !e.is_empty()).map(|e| e.to_uppercase()).collect()))
        }
        Kind::Addresses => {
            let mut ranges = Vec::with_capacity(entries.len());
            for entry in entries {
                let text = if entry.contains('/') { entry.clone() } else { format!("{entry}/32") };
                let range = text
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|error| format!("could not parse ip address override {entry}: {error}"))?;
                ranges.push(range);
            }
            Ok(Entries::Ranges(ranges))
        }
        Kind::Regex => {
            let mut patterns = Vec::with_capacity(entries.len());
            for entry in entries.iter().filter(|e| !e.is_empty()) {
                patterns.push(
                    regex::Regex::new(entry)
                        .map_err(|error| format!("could not parse regex override {entry}: {error}"))?,
                );
            }
            Ok(Entries::Patterns(patterns))
        }
    }
}

/// The entries a provider's body lists: lines, or for IP lists a YAML `whitelist:` sequence.
fn parse_body(kind: Kind, url: &str, body: &str) -> Result<Vec<String>, String> {
    if kind == Kind::Addresses {
        #[derive(serde::Deserialize)]
        struct Document {
            #[serde(default)]
            whitelist: Vec<String>,
        }
        let document: Document = serde_yaml::from_str(body)
            .map_err(|error| format!("Could not parse data from {url}: could not unmarshal data from list {error}"))?;
        return Ok(document.whitelist);
    }
    Ok(body.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_string).collect())
}

pub(super) async fn build(context: &BuildContext<'_>) -> Result<Arc<ListChecker>, BuildError> {
    let settings = Arc::new(settings(context)?);
    let state = Arc::new(Mutex::new(State::default()));
    let mut refresher = None;
    if settings.provider_url.is_empty() {
        let entries = parse_entries(settings.kind, &settings.overrides).map_err(BuildError::Instantiation)?;
        let mut locked = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locked.entries = Some(entries);
    } else {
        let client = http_client().map_err(BuildError::Instantiation)?;
        fetch(&client, &settings, &state).await;
        let (settings, state) = (settings.clone(), state.clone());
        refresher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(settings.refresh_interval).await;
                fetch(&client, &settings, &state).await;
            }
        }));
    }
    Ok(Arc::new(ListChecker { settings, state, refresher }))
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn http_client() -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    let config = istio_runtime::https::client_config(roots).map_err(|error| error.to_string())?;
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Fetches the provider's list once; on failure the previous list stays until `ttl` runs out.
async fn fetch(client: &HttpsClient, settings: &Settings, state: &Mutex<State>) {
    let url = &settings.provider_url;
    let result = async {
        let request = http::Request::get(url.as_str())
            .body(Empty::new())
            .map_err(|error| format!("could not fetch list from {url}: {error}"))?;
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .map_err(|_| format!("could not fetch list from {url}: timed out"))?
            .map_err(|error| format!("could not fetch list from {url}: {error}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("could not fetch list from {url}: {}", response.status().as_u16()));
        }
        let body =
            response.into_body().collect().await.map_err(|error| format!("Could not read from {url}: {error}"))?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }
    .await;
    let mut locked = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let body = match result {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, "list refresh failed");
            locked.last_error = Some(error);
            return;
        }
    };
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        hasher.finish()
    };
    if locked.entries.is_some() && locked.body_digest == Some(digest) {
        locked.fetched_at = Some(Instant::now());
        locked.last_error = None;
        return;
    }
    let parsed = parse_body(settings.kind, url, &body).and_then(|mut entries| {
        entries.extend(settings.overrides.iter().cloned());
        parse_entries(settings.kind, &entries).map_err(|error| format!("Could not parse data from {url}: {error}"))
    });
    match parsed {
        Ok(entries) => {
            locked.entries = Some(entries);
            locked.body_digest = Some(digest);
            locked.fetched_at = Some(Instant::now());
            locked.last_error = None;
        }
        Err(error) => {
            tracing::warn!(%error, "list refresh failed");
            locked.last_error = Some(error);
        }
    }
}

impl ListChecker {
    /// The current entries, after dropping a list that outlived its `ttl`.
    fn current(&self) -> (Option<Entries>, Option<String>) {
        let mut locked = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !self.settings.provider_url.is_empty()
            && locked.fetched_at.is_some_and(|at| at.elapsed() > self.settings.ttl)
            && locked.entries.is_some()
        {
            tracing::warn!("Purging list due to inability to refresh it in time");
            locked.entries = None;
        }
        (locked.entries.clone(), locked.last_error.clone())
    }

    fn result(&self, status: Status) -> CheckResult {
        CheckResult {
            status,
            valid_duration: self.settings.caching_interval,
            valid_use_count: self.settings.caching_use_count,
        }
    }
}

/// The instance's value as the text the list compares (a string, or an address).
fn value_text(value: Option<&Value<'_>>) -> Option<String> {
    match value? {
        Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => {
            Some(text.to_string())
        }
        Value::IpAddress(bytes) | Value::Bytes(bytes) => {
            ip_from_bytes(bytes).map(|address| istio_attribute::value::canonical_ip(address).to_string())
        }
        _ => None,
    }
}

#[async_trait]
impl Handler for ListChecker {
    async fn check(&self, instance: &Instance) -> Result<CheckResult, AdapterError> {
        let (entries, last_error) = self.current();
        let Some(entries) = entries else {
            return match last_error {
                Some(error) => Err(AdapterError(error)),
                None => Ok(CheckResult::none()),
            };
        };
        let value = instance.field("value");
        let Some(text) = value_text(value) else {
            let shown = value.map_or_else(|| "<nil>".to_string(), |value| value.to_string());
            return Ok(
                self.result(Status::new(INVALID_ARGUMENT, format!("{shown} is not a valid string or IP address")))
            );
        };
        let found = match &entries {
            Entries::Strings(strings) => {
                if self.settings.kind == Kind::CaseInsensitive {
                    strings.contains(&text.to_uppercase())
                } else {
                    strings.contains(&text)
                }
            }
            Entries::Ranges(ranges) => match text.parse::<std::net::IpAddr>() {
                Ok(address) => {
                    ranges.iter().any(|range| range.contains(&istio_attribute::value::canonical_ip(address)))
                }
                Err(_) => {
                    return Ok(self.result(Status::new(INVALID_ARGUMENT, format!("{text} is not a valid IP address"))));
                }
            },
            Entries::Patterns(patterns) => patterns.iter().any(|pattern| pattern.is_match(&text)),
        };
        let status = if self.settings.blacklist && found {
            Status::new(PERMISSION_DENIED, format!("{text} is blacklisted"))
        } else if !self.settings.blacklist && !found {
            Status::new(PERMISSION_DENIED, format!("{text} is not whitelisted"))
        } else {
            Status::ok()
        };
        Ok(self.result(status))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::template::Template;

    async fn checker(params: serde_json::Value) -> Result<Arc<ListChecker>, BuildError> {
        let environment = crate::env::Environment::default();
        let context =
            BuildContext { handler: "whitelist.default", params: &params, instances: &[], environment: &environment };
        build(&context).await
    }

    fn entry(value: Value<'static>) -> Instance {
        Instance {
            name: "appversion.instance.default".into(),
            template: Template::ListEntry,
            fields: BTreeMap::from([("value".into(), value)]),
        }
    }

    #[tokio::test]
    async fn string_whitelists_as_the_sample() {
        let list = checker(json!({"overrides": ["v1", "v2"], "blacklist": false})).await.expect("builds");
        let allowed = list.check(&entry(Value::String("v1".into()))).await.expect("checks");
        assert_eq!(allowed.status, Status::ok());
        assert_eq!((allowed.valid_duration, allowed.valid_use_count), (Duration::from_secs(300), 10000));
        let denied = list.check(&entry(Value::String("v3".into()))).await.expect("checks");
        assert_eq!(denied.status, Status::new(PERMISSION_DENIED, "v3 is not whitelisted"));
        let empty = list.check(&entry(Value::String("".into()))).await.expect("checks");
        assert_eq!(empty.status.message, " is not whitelisted");
    }

    #[tokio::test]
    async fn ip_ranges_and_blacklists() {
        let list = checker(json!({"overrides": ["10.57.0.0/16"], "entryType": "IP_ADDRESSES"})).await.expect("builds");
        let inside =
            Value::IpAddress(Cow::Owned(istio_attribute::value::ip_to_16_bytes("10.57.1.2".parse().unwrap()).to_vec()));
        assert!(list.check(&entry(inside)).await.expect("checks").status.is_ok());
        let outside = Value::IpAddress(Cow::Owned(vec![10, 1, 2, 3]));
        assert_eq!(
            list.check(&entry(outside)).await.expect("checks").status,
            Status::new(PERMISSION_DENIED, "10.1.2.3 is not whitelisted")
        );
        let black =
            checker(json!({"overrides": ["^bad"], "entryType": "REGEX", "blacklist": true})).await.expect("builds");
        assert_eq!(
            black.check(&entry(Value::String("badger".into()))).await.expect("checks").status,
            Status::new(PERMISSION_DENIED, "badger is blacklisted")
        );
        let loose =
            checker(json!({"overrides": ["ABC"], "entryType": "CASE_INSENSITIVE_STRINGS"})).await.expect("builds");
        assert!(loose.check(&entry(Value::String("abc".into()))).await.expect("checks").status.is_ok());
        let odd = list.check(&entry(Value::Int64(3))).await.expect("checks");
        assert_eq!(odd.status, Status::new(INVALID_ARGUMENT, "3 is not a valid string or IP address"));
    }

    #[tokio::test]
    async fn bad_params_are_refused_with_the_field() {
        for (params, expected) in [
            (
                json!({"overrides": ["300.1.1.1"], "entryType": "IP_ADDRESSES"}),
                "overrides: could not parse ip address override 300.1.1.1",
            ),
            (json!({"overrides": ["("], "entryType": "REGEX"}), "overrides: could not parse regex override ("),
            (json!({"providerUrl": "nohost"}), "providerUrl: URL scheme and host cannot be empty"),
            (
                json!({"providerUrl": "http://x", "refreshInterval": "0.5s"}),
                "refreshInterval: refresh interval must be at least 1 second",
            ),
            (
                json!({"providerUrl": "http://x", "refreshInterval": "10s", "ttl": "5s"}),
                "ttl: ttl must be > refreshInterval",
            ),
            (json!({"cachingUseCount": -1}), "cachingUseCount: caching use count must be >= 0, it is -1"),
            (json!({"nosuch": 1}), "nosuch"),
        ] {
            let error = checker(params.clone()).await.expect_err("invalid").to_string();
            assert!(error.contains(expected), "{params}: {error}");
        }
    }
}
