//! The secret controller: keeps an `istio.<sa>` Secret for every service account in a managed
//! namespace, as Istio 1.4's Citadel does. It watches ServiceAccounts, Namespaces and Secrets
//! through the store and:
//! - writes a Secret for each account that has none, or whose Secret no longer serves (see
//!   [`crate::workload_secret::judge`]: unreadable, tampered, issued by an older root, for other
//!   names, or in its grace period), and again when its grace period begins;
//! - rewrites a deleted Secret while its account exists, and deletes it with its account;
//! - starts on a namespace's accounts when a label change brings the namespace under it;
//! - follows a self-signed root that another Citadel replaced in `istio-ca-secret`.
//!
//! Every pass is also repeated each minute, as 1.4's informer resync did.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use istio_config::object::{Object, ObjectKey};
use istio_config::store::{Event, Store};
use istio_pki::ca::{CertificateAuthority, LeafRequest};
use istio_pki::identity::SpiffeId;
use tokio::sync::watch;

use crate::dns_names::DnsNames;
use crate::metrics::{ErrorLabels, Metrics, SecretLabels, SignError};
use crate::targeting::Targeting;
use crate::workload_secret::{self, Rotation};

/// How often every Secret is looked at even without events.
const RESYNC: Duration = Duration::from_secs(60);
/// How many times writing a Secret is tried in a row before pausing.
const WRITE_ATTEMPTS: usize = 3;
/// The pause before an account whose Secret could not be written or issued is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the controller needs to decide what each Secret should hold.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub targeting: Targeting,
    pub dns_names: DnsNames,
    pub trust_domain: String,
    pub rotation: Rotation,
    /// Whether the CA is self-signed (its root lives in `istio-ca-secret`).
    pub self_signed: bool,
    /// More trusted roots appended to a self-signed root (`--root-cert`), PEM.
    pub extra_roots: Option<String>,
}

/// A service account: namespace and name.
type Account = (String, String);

/// What the controller has seen in the store.
#[derive(Debug, Default)]
struct View {
    accounts: BTreeSet<Account>,
    /// Namespace labels; a namespace without an object is absent.
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Workload Secrets by the account they are for.
    secrets: BTreeMap<Account, Object>,
    /// When each account's certificate is due for renewal.
    renewals: BTreeMap<Account, SystemTime>,
    synced: bool,
}

pub struct Controller {
    store: Arc<dyn Store>,
    ca: Arc<ArcSwap<CertificateAuthority>>,
    settings: ControllerSettings,
    metrics: Metrics,
    view: View,
    /// Accounts to look at on the next pass.
    dirty: BTreeSet<Account>,
    ready: watch::Sender<bool>,
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<ArcSwap<CertificateAuthority>>,
        settings: ControllerSettings,
        metrics: Metrics,
        ready: watch::Sender<bool>,
    ) -> Controller {
        Controller { store, ca, settings, metrics, view: View::default(), dirty: BTreeSet::new(), ready }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut events = self.store.watch();
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let next_renewal = self.next_renewal();
            tokio::select! {
                () = &mut shutdown => return,
                event = events.recv() => {
                    let Some(event) = event else {
                        tracing::warn!("the store's watch ended; secret controller stops");
                        return;
                    };
                    self.observe(event);
                    while let Ok(event) = events.try_recv() {
                        self.observe(event);
                    }
                }
                _ = resync.tick() => self.mark_all(),
                () = sleep_until(next_renewal) => self.mark_due(SystemTime::now()),
            }
            if self.view.synced {
                self.reconcile().await;
                self.ready.send_replace(true);
            }
        }
    }

    /// Looks at the account again after a pause (a failed write or issue), rather than at the
    /// next resync a minute away: a workload without its Secret has no mutual TLS.
    fn retry_later(&mut self, account: Account) {
        self.view.renewals.insert(account, SystemTime::now() + RETRY_AFTER);
    }

    fn next_renewal(&self) -> Option<SystemTime> {
        self.view.renewals.values().min().copied()
    }

    fn mark_all(&mut self) {
        self.dirty.extend(self.view.accounts.iter().cloned());
    }

    fn mark_due(&mut self, now: SystemTime) {
        let due: Vec<Account> =
            self.view.renewals.iter().filter(|(_, at)| **at <= now).map(|(account, _)| account.clone()).collect();
        for account in due {
            self.view.renewals.remove(&account);
            self.dirty.insert(account);
        }
    }

    /// Takes one store event into the view and marks what it affects.
    fn observe(&mut self, event: Event) {
        match event {
            Event::Synced => {
                self.view.synced = true;
                self.mark_all();
            }
            Event::SourceError { source, line, message } => {
                tracing::warn!(%source, line, %message, "store source error");
            }
            Event::Added(object) | Event::Modified(object) => self.upsert(object),
            Event::Deleted(object) => self.remove(object),
        }
    }

    fn upsert(&mut self, object: Object) {
        let namespace = object.namespace().to_string();
        match (object.group(), object.kind.as_str()) {
            ("", "ServiceAccount") => {
                let account = (namespace, object.name().to_string());
                self.view.accounts.insert(account.clone());
                self.dirty.insert(account);
            }
            ("", "Namespace") => {
                let name = object.name().to_string();
                let labels: BTreeMap<String, String> = object.metadata.labels.clone().unwrap_or_default();
                let was_managed = self.manages(&name);
                self.view.namespaces.insert(name.clone(), labels);
                if !was_managed && self.manages(&name) {
                    tracing::info!("namespace {name} is now managed; writing its workload Secrets");
                    self.mark_namespace(&name);
                }
            }
            ("", "Secret") if self.is_ca_secret(&object) => self.follow_root(&object),
            ("", "Secret") => {
                if let Some(account_name) = workload_secret::account_of(&object) {
                    let account = (namespace, account_name);
                    self.view.secrets.insert(account.clone(), object);
                    self.dirty.insert(account);
                }
            }
            _ => {}
        }
    }

    fn remove(&mut self, object: Object) {
        let namespace = object.namespace().to_string();
        match (object.group(), object.kind.as_str()) {
            ("", "ServiceAccount") => {
                let account = (namespace, object.name().to_string());
                self.view.accounts.remove(&account);
                self.view.renewals.remove(&account);
                if self.view.secrets.contains_key(&account) {
                    self.dirty.insert(account);
                }
            }
            ("", "Namespace") => {
                self.view.namespaces.remove(object.name());
                self.mark_namespace(object.name());
            }
            ("", "Secret") => {
                if let Some(account_name) = workload_secret::account_of(&object) {
                    let account = (namespace, account_name);
                    self.view.secrets.remove(&account);
                    if self.view.accounts.contains(&account) {
                        tracing::info!(
                            "re-creating deleted Secret {}/{}",
                            account.0,
                            workload_secret::secret_name(&account.1)
                        );
                        self.metrics.recreated_after_deletion.inc();
                    }
                    self.dirty.insert(account);
                }
            }
            _ => {}
        }
    }

    fn mark_namespace(&mut self, namespace: &str) {
        let accounts: Vec<Account> =
            self.view.accounts.iter().filter(|(candidate, _)| candidate == namespace).cloned().collect();
        self.dirty.extend(accounts);
    }

    fn manages(&self, namespace: &str) -> bool {
        self.settings.targeting.manages(namespace, self.view.namespaces.get(namespace))
    }

    fn is_ca_secret(&self, object: &Object) -> bool {
        self.settings.self_signed
            && object.key() == crate::ca_setup::ca_secret_key(&self.settings.targeting.storage_namespace)
    }

    /// Another Citadel replaced the self-signed root: sign with it from now on.
    fn follow_root(&mut self, secret: &Object) {
        let current = self.ca.load();
        let stored_cert = workload_secret::data(secret, crate::ca_setup::CA_CERT);
        if stored_cert.as_deref() == Some(current.certificate_pem().as_bytes()) {
            return;
        }
        let namespace = &self.settings.targeting.storage_namespace;
        match crate::ca_setup::from_secret(secret, namespace, self.settings.extra_roots.as_deref()) {
            Ok(ca) => {
                tracing::info!(
                    "the self-signed root in {namespace}/{} changed; re-issuing",
                    crate::ca_setup::CA_SECRET
                );
                self.metrics.set_root_expiry(ca.root_pem());
                self.ca.store(Arc::new(ca));
                self.mark_all();
            }
            Err(error) => tracing::error!(%error, "ignoring an unusable root; keeping the current one"),
        }
    }

    /// Brings every marked account's Secret to what it should be.
    async fn reconcile(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for account in dirty {
            if let Err(error) = self.reconcile_account(&account).await {
                tracing::warn!(namespace = %account.0, account = %account.1, %error, "cannot update the workload Secret; retrying in {RETRY_AFTER:?}");
                self.retry_later(account);
            }
        }
    }

    async fn reconcile_account(&mut self, account: &Account) -> Result<(), istio_config::store::StoreError> {
        let (namespace, name) = account;
        let secret_key = ObjectKey {
            group: String::new(),
            kind: "Secret".into(),
            namespace: namespace.clone(),
            name: workload_secret::secret_name(name),
        };
        if !self.view.accounts.contains(account) {
            // The account is gone: so is its Secret.
            if self.view.secrets.contains_key(account) {
                // Forgotten only once deleted, so a failed delete is tried again.
                self.store.delete(&secret_key).await?;
                self.view.secrets.remove(account);
                self.metrics.deleted_with_account.inc();
                self.metrics
                    .secret_expiry
                    .remove(&SecretLabels { namespace: namespace.clone(), secret: secret_key.name.clone() });
                tracing::info!("deleted Secret {namespace}/{} with its service account", secret_key.name);
            }
            return Ok(());
        }
        if !self.manages(namespace) {
            return Ok(());
        }
        let names = self.names(namespace, name);
        let ca = self.ca.load_full();
        let stale = match self.view.secrets.get(account) {
            None => {
                self.metrics.created_for_account.inc();
                "missing".to_string()
            }
            Some(secret) => {
                match workload_secret::judge(secret, &names, ca.root_pem(), &self.settings.rotation, SystemTime::now())
                {
                    Ok(fresh) => {
                        self.record_fresh(account, &secret_key.name, fresh);
                        return Ok(());
                    }
                    Err(stale) => stale.to_string(),
                }
            }
        };
        let request = LeafRequest { ttl: self.settings.rotation.ttl, ..LeafRequest::for_names(names.clone()) };
        let issued = match ca.issue(&request) {
            Ok(issued) => issued,
            Err(error) => {
                tracing::error!(%error, "cannot issue a certificate for {namespace}/{name}");
                // As 1.4's controller: making the key or request is the CSR step, the rest signing.
                if matches!(error, istio_pki::ca::CaError::Key(_) | istio_pki::ca::CaError::Name(_)) {
                    self.metrics.controller_csr_errors.inc();
                } else {
                    self.metrics
                        .controller_sign_errors
                        .get_or_create(&ErrorLabels { error: SignError::CERT_GEN_ERROR })
                        .inc();
                }
                self.retry_later(account.clone());
                return Ok(());
            }
        };
        let secret = workload_secret::build(namespace, name, &issued, ca.root_pem());
        let mut attempt = 0;
        let stored = loop {
            attempt += 1;
            match self.store.apply(secret.clone()).await {
                Ok(stored) => break stored,
                Err(error) if attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(%error, attempt, "writing Secret {namespace}/{}", secret_key.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error),
            }
        };
        tracing::info!("wrote Secret {namespace}/{} ({stale})", secret_key.name);
        if let Ok(fresh) =
            workload_secret::judge(&stored, &names, ca.root_pem(), &self.settings.rotation, SystemTime::now())
        {
            self.record_fresh(account, &secret_key.name, fresh);
        }
        self.view.secrets.insert(account.clone(), stored);
        Ok(())
    }

    fn record_fresh(&mut self, account: &Account, secret_name: &str, fresh: workload_secret::Fresh) {
        self.view.renewals.insert(account.clone(), fresh.renew_at);
        self.metrics
            .secret_expiry
            .get_or_create(&SecretLabels { namespace: account.0.clone(), secret: secret_name.to_string() })
            .set(crate::metrics::unix_seconds(fresh.not_after));
    }

    /// The names an account's certificate carries: its SPIFFE identity, then any DNS names.
    fn names(&self, namespace: &str, account: &str) -> Vec<String> {
        let identity = SpiffeId::new(&self.settings.trust_domain, namespace, account)
            .map(|id| id.to_string())
            .unwrap_or_else(|_| format!("spiffe://{}/ns/{namespace}/sa/{account}", self.settings.trust_domain));
        let mut names = vec![identity];
        names.extend(self.settings.dns_names.for_account(namespace, account).iter().cloned());
        names
    }
}

/// Sleeps until `at` (at once if it has passed); forever for `None`.
async fn sleep_until(at: Option<SystemTime>) {
    match at {
        Some(at) => tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await,
        None => std::future::pending().await,
    }
}
