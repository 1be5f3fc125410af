//! The Mixer client (1.4's `MixerClientImpl::Check`): the check cache first; on a hit that
//! allows, the quotas are decided by the quota cache and allocations go out in the background;
//! otherwise one `Check` carries the attributes (compressed with the global dictionary) and
//! the quotas, retried as the fail policy says, and its answer fills both caches. A call that
//! fails lets the request through when the policy fails open, and refuses it otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use istio_api::pb::istio::mixer::v1 as mixer;
use istio_attribute::dictionary::global_words;
use istio_attribute::quota_spec::Requirement;
use istio_attribute::wire::compressed::encode;
use istio_attribute::MapBag;

use super::super::upstream::ClusterManager;
use super::channel;
use super::check_cache::{self, CheckCache};
use super::config::{Status, Transport};
use super::quota_cache::{self, QuotaCache};

/// How long a call to Mixer may take (1.4's client: 5 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A check's outcome for the filter: allow or refuse, and header operations to apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Decision {
    pub status: Status,
    pub directive: Option<mixer::RouteDirective>,
}

/// The client for one check cluster and fail policy, shared by every filter that uses it.
#[derive(Debug)]
pub(crate) struct MixerClient {
    pub transport: Transport,
    checks: Mutex<CheckCache>,
    quotas: Mutex<QuotaCache>,
    /// Deduplication ids: this client's uuid and a counter.
    uuid: String,
    counter: AtomicU64,
}

type Registry = std::sync::RwLock<HashMap<(Transport, u64), Arc<MixerClient>>>;

fn registry() -> &'static Registry {
    static CLIENTS: OnceLock<Registry> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

impl MixerClient {
    /// The client for `transport` and the filter config `scope`; its caches outlive config
    /// updates that keep both.
    pub(crate) fn shared(transport: &Transport, scope: u64) -> Arc<MixerClient> {
        let key = (transport.clone(), scope);
        if let Some(client) = registry().read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key) {
            return client.clone();
        }
        let mut clients = registry().write().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients.entry(key).or_insert_with(|| Arc::new(MixerClient::new(transport.clone()))).clone()
    }

    pub(crate) fn new(transport: Transport) -> MixerClient {
        let check_entries = if transport.check_cache { check_cache::DEFAULT_ENTRIES } else { 0 };
        let quota_entries = if transport.quota_cache { quota_cache::DEFAULT_ENTRIES } else { 0 };
        MixerClient {
            checks: Mutex::new(CheckCache::new(check_entries, transport.fail_open)),
            quotas: Mutex::new(QuotaCache::new(quota_entries)),
            transport,
            uuid: uuid::Uuid::new_v4().to_string(),
            counter: AtomicU64::new(0),
        }
    }

    fn request(
        &self,
        attributes: &MapBag,
        quotas: HashMap<String, mixer::check_request::QuotaParams>,
    ) -> mixer::CheckRequest {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        mixer::CheckRequest {
            attributes: Some(encode(attributes, global_words().len())),
            global_word_count: u32::try_from(global_words().len()).unwrap_or(u32::MAX),
            deduplication_id: format!("{}{count}", self.uuid),
            quotas,
        }
    }

    /// Sends a check, retrying failed calls with jittered exponential backoff.
    async fn call(
        &self,
        clusters: &Arc<ClusterManager>,
        request: mixer::CheckRequest,
    ) -> Result<mixer::CheckResponse, Status> {
        let mut attempt = 0;
        loop {
            match channel::check(clusters, &self.transport.check_cluster, request.clone(), CALL_TIMEOUT).await {
                Ok(response) => return Ok(response),
                Err(error) if attempt < self.transport.max_retry => {
                    let base = self.transport.base_retry_wait.as_millis() as u64;
                    let ceiling = (self.transport.max_retry_wait.as_millis() as u64)
                        .min(base.saturating_mul(1 << attempt.min(16)));
                    let wait = if ceiling > base { rand::random_range(base..=ceiling) } else { base };
                    tracing::debug!(%error, attempt, "retrying the check");
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error.status()),
            }
        }
    }

    fn failed_call(&self, status: Status) -> Status {
        if self.transport.fail_open {
            Status::ok()
        } else {
            status
        }
    }

    /// Checks a request's attributes, with the quotas its service charges.
    pub(crate) async fn check(
        self: &Arc<Self>,
        clusters: &Arc<ClusterManager>,
        attributes: &MapBag,
        requirements: &[Requirement],
    ) -> Decision {
        let now = Instant::now();
        let cached = self.checks.lock().unwrap_or_else(|p| p.into_inner()).lookup(attributes, now);
        if let Some(cached) = &cached {
            if !cached.status.is_ok() || requirements.is_empty() {
                return Decision { status: cached.status.clone(), directive: cached.directive.clone() };
            }
        }
        let items =
            self.quotas.lock().unwrap_or_else(|p| p.into_inner()).plan(attributes, requirements, cached.is_some(), now);
        let quotas = QuotaCache::request_quotas(&items);
        if let Some(cached) = cached.as_ref().filter(|_| QuotaCache::decided(&items)) {
            // Everything was decided here; allocations the counters want go out meanwhile.
            let status = QuotaCache::local_status(&items);
            if !quotas.is_empty() {
                let (client, clusters, attributes) = (self.clone(), clusters.clone(), attributes.clone());
                let request = self.request(&attributes, quotas);
                tokio::spawn(async move {
                    let response = client.call(&clusters, request).await.ok();
                    client.quotas.lock().unwrap_or_else(|p| p.into_inner()).answered(
                        &attributes,
                        &items,
                        response.as_ref(),
                        Instant::now(),
                    );
                });
            }
            return Decision { status, directive: cached.directive.clone() };
        }
        let request = self.request(attributes, quotas);
        match self.call(clusters, request).await {
            Err(status) => {
                self.quotas.lock().unwrap_or_else(|p| p.into_inner()).answered(
                    attributes,
                    &items,
                    None,
                    Instant::now(),
                );
                Decision { status: self.failed_call(status), directive: None }
            }
            Ok(response) => {
                let now = Instant::now();
                let policy = match &cached {
                    Some(cached) => cached.status.clone(),
                    None => self.checks.lock().unwrap_or_else(|p| p.into_inner()).store(attributes, &response, now),
                };
                let quota_status = self.quotas.lock().unwrap_or_else(|p| p.into_inner()).answered(
                    attributes,
                    &items,
                    Some(&response),
                    now,
                );
                let directive =
                    response.precondition.as_ref().and_then(|precondition| precondition.route_directive.clone());
                let status = if !policy.is_ok() || requirements.is_empty() { policy } else { quota_status };
                Decision { status, directive }
            }
        }
    }
}
