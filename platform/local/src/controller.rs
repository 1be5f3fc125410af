//! The local platform's daemon (`istioctl x local daemon`): the kubelet, controller manager
//! and kube-proxy of one host. It starts and supervises the control plane, applies the
//! gateway manifests, and then reconciles the store twice a second: ClusterIPs for new
//! Services, pods for Deployments (injected through the injector's webhook), pods on the host
//! for Pod objects, Pod status and Endpoints from what runs, and every pod's `/etc/hosts` and
//! ClusterIP rules. On SIGTERM it stops every pod and component and removes the bridge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use istio_config::object::Object;
use istio_config::store::directory::DirectoryStore;
use istio_config::store::Store;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::admission::{self, Webhook};
use crate::dns;
use crate::egress;
use crate::images::ImageMap;
use crate::install::{Plan, INJECTOR};
use crate::layout::Layout;
use crate::meshconfig;
use crate::net;
use crate::nodes;
use crate::objects::{self, from_json, injection_enabled, labels, to_json};
use crate::pod::{self, PodHandle, PodInputs, PodState};
use crate::pod_context::PodContext;
use crate::services::{self, PodEndpoint};
use crate::supervise::{start_node_agent, supervise_component, wait_for_port, with_cluster_resolver};
use crate::volumes;

/// The file whose presence says the control plane is up and the gateways are applied.
pub fn ready_marker(layout: &Layout) -> PathBuf {
    layout.root().join("ready")
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(layout: Layout, binaries: PathBuf, launcher: PathBuf) -> anyhow::Result<()> {
    let plan = Plan::load(&layout)?;
    crate::process::record(&layout.daemon_pid(), std::process::id())?;
    let result = serve(&layout, &plan, binaries, launcher).await;
    let _ = std::fs::remove_file(ready_marker(&layout));
    let _ = std::fs::remove_file(layout.daemon_pid());
    result
}

async fn serve(layout: &Layout, plan: &Plan, binaries: PathBuf, launcher: PathBuf) -> anyhow::Result<()> {
    let bridge_addresses: Vec<Ipv4Addr> = plan.components().iter().map(|component| component.address).collect();
    tokio::task::spawn_blocking(move || net::ensure_bridge(&bridge_addresses)).await??;
    let saved_ip_forward = layout.saved_ip_forward();
    tokio::task::spawn_blocking(move || egress::enable(&saved_ip_forward)).await??;
    let store = Arc::new(DirectoryStore::open(layout.store()).context("opening the object store")?);
    meshconfig::ensure_config_map(layout, &*store).await.context("the istio ConfigMap")?;
    nodes::ensure_default_node(&*store).await.context("the local Node")?;
    // `ip netns exec` and the pods read their /etc files from here; if it is new, it is ours.
    let etc_netns = std::path::Path::new("/etc/netns");
    if !etc_netns.exists() {
        std::fs::create_dir_all(etc_netns)?;
        use std::io::Write;
        let mut record = std::fs::OpenOptions::new().create(true).append(true).open(layout.created_paths())?;
        writeln!(record, "{}", etc_netns.display())?;
    }
    if !plan.self_signed_ca() {
        // Citadel's `cacerts` volume holds the Secret before Citadel starts, as the kubelet
        // mounts it before starting the container.
        sync_citadel_ca_volume(layout, &store).await?;
    }
    let (stop_control, control_stopped) = watch::channel(false);
    let mut control = Vec::new();
    for component in plan.components() {
        if plan.program(component, &binaries).is_none() {
            let message = format!(
                "the {} addon needs `{}` (Debian's package of that name), which is not installed; going on without it",
                component.name, component.binary
            );
            tracing::warn!("{message}");
            println!("{message}");
            continue;
        }
        if component == crate::install::PROMETHEUS {
            crate::addons::write_config(layout, &plan.components()).context("Prometheus' config")?;
        }
        let (mut program, mut args, env) = plan.command(component, layout, &binaries);
        if component.cluster_dns {
            (program, args) = with_cluster_resolver(layout, component, &launcher, program, args, &env)?;
        }
        control.push(tokio::spawn(supervise_component(
            layout.clone(),
            component,
            program,
            args,
            env,
            control_stopped.clone(),
        )));
        wait_for_port(component).await?;
        tracing::info!(component = component.name, address = %component.address, "control-plane component is up");
    }
    if let Some((program, args)) = plan.node_agent_command(layout, &binaries) {
        control.push(start_node_agent(layout, plan, program, args, control_stopped.clone()).await?);
    }
    let manifests =
        plan.gateway_manifests()?.into_iter().chain(plan.security_manifests()).chain(plan.mixer_manifests());
    for manifest in manifests.chain(plan.telemetry_manifests()) {
        for object in crate::kubectl::parse(&manifest, "installation manifest", crate::install::SYSTEM_NAMESPACE)? {
            if store.get(&object.key()).await?.is_none() {
                store.apply(object).await?;
            }
        }
    }
    // Cluster DNS on the host's bridge address; without it pods still have /etc/hosts.
    let records = dns::Records::default();
    let dns_address = std::net::SocketAddr::new(net::HOST_ADDRESS.into(), 53);
    let cluster_dns = match tokio::net::UdpSocket::bind(dns_address).await {
        Ok(probe) => {
            drop(probe);
            let mut stopped = stop_control.subscribe();
            tokio::spawn(dns::serve(dns_address, records.clone(), async move {
                let _ = stopped.changed().await;
            }));
            true
        }
        Err(error) => {
            tracing::warn!(%error, "cluster DNS cannot bind {dns_address}; pods resolve names from /etc/hosts only");
            false
        }
    };
    let injector =
        if plan.components().contains(&INJECTOR) { Some(crate::install::webhook(layout, INJECTOR)?) } else { None };
    let context = Arc::new(PodContext {
        layout: layout.clone(),
        images: ImageMap::builtin(),
        binaries,
        launcher,
        created: std::sync::Mutex::new(()),
        envoy_binary: plan.envoy_binary(),
        cluster_dns,
    });
    let mut controller = Controller {
        store,
        context,
        plan: plan.clone(),
        injector,
        pods: HashMap::new(),
        stopping: HashMap::new(),
        applied_hosts: HashMap::new(),
        applied_rules: HashMap::new(),
        applied_host_rules: None,
        records,
    };
    std::fs::write(ready_marker(layout), "ready\n")?;
    println!("local platform ready");
    let shutdown = istio_runtime::shutdown_signal();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut shutdown => break,
        }
        // A reconcile is idempotent, so shutting down in the middle of one is safe.
        tokio::select! {
            result = controller.reconcile() => {
                if let Err(error) = result {
                    tracing::warn!("reconcile: {error:#}");
                }
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: stopping pods");
    let _ = std::fs::remove_file(ready_marker(layout));
    let pods: Vec<PodHandle> = controller.pods.drain().map(|(_, (_, handle))| handle).collect();
    futures_join(pods.into_iter().map(PodHandle::stop).collect()).await;
    for (_, (_, task)) in controller.stopping.drain() {
        let _ = task.await;
    }
    let _ = stop_control.send(true);
    for task in control {
        let _ = task.await;
    }
    tokio::task::spawn_blocking(net::delete_bridge).await??;
    let saved_ip_forward = layout.saved_ip_forward();
    tokio::task::spawn_blocking(move || egress::disable(&saved_ip_forward)).await??;
    tracing::info!("local platform stopped");
    Ok(())
}

/// Writes the `cacerts` Secret into Citadel's volume, as the kubelet keeps a mounted Secret up
/// to date. Citadel reads the files when it starts (waiting for them if they are missing or
/// broken), as 1.4's did.
async fn sync_citadel_ca_volume(layout: &Layout, store: &DirectoryStore) -> anyhow::Result<()> {
    use crate::install::{CITADEL, CITADEL_CA_SECRET, SYSTEM_NAMESPACE};
    let secrets = store.list(&objects::secrets()).await?;
    let dir = layout.control_volume(CITADEL.name, CITADEL_CA_SECRET);
    if volumes::sync_secret_volume(&dir, &secrets, SYSTEM_NAMESPACE, CITADEL_CA_SECRET)? {
        tracing::info!("Secret {SYSTEM_NAMESPACE}/{CITADEL_CA_SECRET} changed; Citadel's volume updated");
    }
    Ok(())
}

async fn futures_join(tasks: Vec<impl std::future::Future<Output = ()> + Send + 'static>) {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    for handle in handles {
        let _ = handle.await;
    }
}

const DEFAULT_NAMESPACE: &str = "default";
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

struct Controller {
    store: Arc<DirectoryStore>,
    context: Arc<PodContext>,
    plan: Plan,
    injector: Option<Webhook>,
    /// Running pods by (namespace, name), with the uid of the Pod object they run.
    pods: HashMap<(String, String), (String, PodHandle)>,
    /// Pods being stopped: their address stays taken and their name is not reused until done.
    stopping: HashMap<(String, String), (String, tokio::task::JoinHandle<()>)>,
    applied_hosts: HashMap<(String, String), String>,
    applied_rules: HashMap<(String, String), String>,
    /// The ClusterIP rules last installed for the host's own processes.
    applied_host_rules: Option<String>,
    /// What cluster DNS answers.
    records: dns::Records,
}

fn pod_key(object: &Object) -> (String, String) {
    (object.namespace().to_string(), object.name().to_string())
}

fn uid(object: &Object) -> String {
    object.metadata.uid.clone().unwrap_or_default()
}

/// A new object uid.
pub fn new_uid() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Logs a failure about one object and carries on with the others.
fn log_failure(what: &str, result: anyhow::Result<()>) {
    if let Err(error) = result {
        tracing::warn!("{what}: {error:#}");
    }
}

impl Controller {
    async fn reconcile(&mut self) -> anyhow::Result<()> {
        self.stopping.retain(|_, (_, task)| !task.is_finished());
        let config_maps = self.store.list(&objects::config_maps()).await?;
        match meshconfig::sync_file(&self.context.layout, &config_maps) {
            Ok(true) => tracing::info!("the istio ConfigMap changed; mesh config file updated"),
            Ok(false) => {}
            Err(error) => tracing::warn!("updating the mesh config file: {error:#}"),
        }
        if !self.plan.self_signed_ca() {
            sync_citadel_ca_volume(&self.context.layout, &self.store).await?;
        }
        let namespaces = self.store.list(&objects::namespaces()).await?;
        self.ensure_default_service_accounts(&namespaces).await?;
        let services = self.allocate_cluster_ips().await?;
        self.update_dns(&services);
        self.reconcile_deployments().await?;
        let pods = self.assign_pod_addresses().await?;
        self.run_pods(&pods, &services, &config_maps).await?;
        let pods = self.report_pod_status(pods).await?;
        log_failure(
            "Prometheus' sidecar targets",
            crate::addons::write_envoy_targets(&self.context.layout, &sidecars(&pods)),
        );
        let endpoints = self.reconcile_endpoints(&services, &pods).await?;
        self.reconcile_networking(&services, &endpoints, &pods).await;
        Ok(())
    }

    /// Every namespace has a `default` ServiceAccount, as Kubernetes' service-account
    /// controller makes one (Citadel then issues its `istio.default`).
    async fn ensure_default_service_accounts(&self, namespaces: &[Object]) -> anyhow::Result<()> {
        let names = namespaces.iter().map(Object::name).chain([DEFAULT_NAMESPACE, crate::install::SYSTEM_NAMESPACE]);
        for namespace in names.collect::<std::collections::BTreeSet<_>>() {
            let key = objects::key("", "ServiceAccount", namespace, DEFAULT_SERVICE_ACCOUNT);
            if self.store.get(&key).await?.is_none() {
                let account = objects::from_json(serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
                }))?;
                self.store.apply(account).await?;
            }
        }
        Ok(())
    }

    /// What cluster DNS answers: every Service's ClusterIP and the control plane's addresses,
    /// and the external names of the installation's hosts file.
    fn update_dns(&self, services: &[Object]) {
        let hosts = std::fs::read_to_string(self.context.layout.dns_hosts()).unwrap_or_default();
        self.records.set_external(dns::parse_hosts(&hosts));
        let service_records = services.iter().filter_map(|service| {
            let ip = service.spec().get("clusterIP").and_then(Value::as_str)?.parse::<Ipv4Addr>().ok()?;
            Some((service.name().to_string(), service.namespace().to_string(), ip))
        });
        let control_records =
            self.plan.control_hosts().into_iter().map(|host| (host.service, host.namespace, host.address));
        self.records.set(service_records.chain(control_records).collect::<Vec<_>>());
        self.records.set_aliases(services.iter().filter_map(|service| {
            let target = services::external_name(service)?;
            Some((service.name().to_string(), service.namespace().to_string(), target.to_string()))
        }));
    }

    /// Gives Services without a ClusterIP one; returns every Service.
    async fn allocate_cluster_ips(&self) -> anyhow::Result<Vec<Object>> {
        let mut services = self.store.list(&objects::services()).await?;
        for index in 0..services.len() {
            let has_ip =
                services[index].spec().get("clusterIP").and_then(Value::as_str).is_some_and(|ip| !ip.is_empty());
            // An ExternalName Service is a DNS name, without a ClusterIP, as on Kubernetes.
            if has_ip || services::external_name(&services[index]).is_some() {
                continue;
            }
            let Some(ip) = services::allocate_cluster_ip(&services) else {
                anyhow::bail!("no free ClusterIP");
            };
            // Re-read, so a Service deleted or changed meanwhile is not written back.
            let Some(current) = self.store.get(&services[index].key()).await? else { continue };
            let mut json = to_json(&current);
            json["spec"]["clusterIP"] = json!(ip.to_string());
            match self.store.apply(from_json(json)?).await {
                Ok(stored) => services[index] = stored,
                Err(error) => tracing::warn!(service = %current.name(), "assigning a ClusterIP: {error}"),
            }
        }
        Ok(services)
    }

    async fn reconcile_deployments(&self) -> anyhow::Result<()> {
        let deployments = self.store.list(&objects::deployments()).await?;
        // Namespaces are read after the Deployments, so a namespace labelled for injection
        // before a Deployment was applied is seen labelled (as an API server's webhook
        // namespaceSelector sees it when the pod is created).
        let namespaces = self.store.list(&objects::namespaces()).await?;
        let namespaces = namespaces.as_slice();
        let pods = self.store.list(&objects::pods()).await?;
        let live: BTreeSet<(String, String)> =
            deployments.iter().map(|d| (d.namespace().to_string(), d.name().to_string())).collect();
        for deployment in &deployments {
            let result = self.reconcile_deployment(deployment, &pods, namespaces).await;
            log_failure(&format!("Deployment {}/{}", deployment.namespace(), deployment.name()), result);
        }
        // Pods whose Deployment is gone.
        for pod in &pods {
            let Some(set) = owner_set(pod) else { continue };
            let Some(deployment) = set.rsplit_once('-').filter(|(_, hash)| is_hash(hash)).map(|(name, _)| name) else {
                continue;
            };
            if is_deployment_pod(pod) && !live.contains(&(pod.namespace().to_string(), deployment.to_string())) {
                log_failure(
                    &format!("deleting pod {}", pod.name()),
                    self.store.delete(&pod.key()).await.map(drop).map_err(Into::into),
                );
            }
        }
        Ok(())
    }

    async fn reconcile_deployment(
        &self,
        deployment: &Object,
        pods: &[Object],
        namespaces: &[Object],
    ) -> anyhow::Result<()> {
        let template = deployment.spec().get("template").cloned().unwrap_or_else(|| json!({}));
        let hash = template_hash(&template);
        let set_name = format!("{}-{hash}", deployment.name());
        let replicas = deployment.spec().get("replicas").and_then(Value::as_u64).unwrap_or(1) as usize;
        let in_namespace = |pod: &&Object| pod.namespace() == deployment.namespace();
        let owned: Vec<&Object> = pods
            .iter()
            .filter(in_namespace)
            .filter(|pod| owner_set(pod).as_deref() == Some(set_name.as_str()))
            .collect();
        for _ in owned.len()..replicas {
            self.create_pod(deployment, &template, &hash, &set_name, namespaces).await?;
        }
        for extra in owned.iter().skip(replicas) {
            self.store.delete(&extra.key()).await?;
        }
        // Pods of an older template go once the new ones are all ready (a rolling update).
        let ready =
            owned.iter().filter(|pod| PodEndpoint::from_pod(pod).is_some_and(|endpoint| endpoint.ready)).count();
        if ready >= replicas {
            let prefix = format!("{}-", deployment.name());
            for old in pods.iter().filter(in_namespace).filter(|pod| {
                owner_set(pod).is_some_and(|set| set != set_name && set.strip_prefix(&prefix).is_some_and(is_hash))
            }) {
                self.store.delete(&old.key()).await?;
            }
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        deployment: &Object,
        template: &Value,
        hash: &str,
        set_name: &str,
        namespaces: &[Object],
    ) -> anyhow::Result<()> {
        let namespace = deployment.namespace();
        let mut pod_labels = template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({}));
        pod_labels["pod-template-hash"] = json!(hash);
        let mut metadata = json!({
            "generateName": format!("{set_name}-"),
            "namespace": namespace,
            "labels": pod_labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": set_name, "controller": true,
                                 "blockOwnerDeletion": true}],
        });
        if let Some(annotations) = template.pointer("/metadata/annotations") {
            metadata["annotations"] = annotations.clone();
        }
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                             "spec": template.get("spec").cloned().unwrap_or_else(|| json!({}))});
        if injection_enabled(namespaces, namespace) {
            if let Some(injector) = &self.injector {
                pod = admission::inject(injector, &pod, namespace).await.context("creating a pod")?;
            }
        }
        pod["metadata"]["name"] = json!(format!("{set_name}-{}", random_suffix()));
        pod["metadata"]["uid"] = json!(new_uid());
        let stored = self.store.apply(from_json(pod)?).await?;
        tracing::info!(pod = %stored.name(), %namespace, "pod created");
        Ok(())
    }

    /// Binds new pods to a node and gives them an address (a pod no node takes stays Pending,
    /// saying why); returns every Pod.
    async fn assign_pod_addresses(&self) -> anyhow::Result<Vec<Object>> {
        let mut pods = self.store.list(&objects::pods()).await?;
        let known_nodes = self.store.list(&nodes::nodes()).await?;
        // Addresses of pods still running or stopping stay taken until their network is gone.
        let mut used: BTreeSet<String> = pods
            .iter()
            .filter_map(|pod| PodEndpoint::from_pod(pod).map(|endpoint| endpoint.ip))
            .chain(self.pods.values().map(|(_, handle)| handle.ip.clone()))
            .chain(self.stopping.values().map(|(ip, _)| ip.clone()))
            .collect();
        for index in 0..pods.len() {
            if PodEndpoint::from_pod(&pods[index]).is_some() {
                continue;
            }
            let node = match nodes::node_of(&pods[index]) {
                Some(node) => node.to_string(),
                None => match nodes::schedule(&pods[index], &known_nodes, &pods) {
                    Ok(node) => node,
                    Err(reason) => {
                        self.mark_unschedulable(&mut pods[index], &reason).await?;
                        continue;
                    }
                },
            };
            let pod = &mut pods[index];
            let Some(ip) = (1..60_000).map(net::pod_address).map(|ip| ip.to_string()).find(|ip| !used.contains(ip))
            else {
                anyhow::bail!("no free pod address");
            };
            used.insert(ip.clone());
            let mut json = to_json(pod);
            if json["metadata"].get("uid").is_none() {
                json["metadata"]["uid"] = json!(new_uid());
            }
            json["spec"]["nodeName"] = json!(node);
            json["status"] = json!({"phase": "Pending", "podIP": ip, "hostIP": net::HOST_ADDRESS.to_string()});
            match self.store.apply(from_json(json)?).await {
                Ok(stored) => *pod = stored,
                Err(error) => tracing::warn!(pod = %pod.name(), "assigning an address: {error}"),
            }
        }
        Ok(pods)
    }

    /// Writes the scheduler's Pending status on a pod no node takes (once per reason).
    async fn mark_unschedulable(&self, pod: &mut Object, reason: &nodes::Unschedulable) -> anyhow::Result<()> {
        let status = nodes::pending_status(reason);
        if pod.body.get("status") == Some(&status) {
            return Ok(());
        }
        tracing::info!(pod = %pod.name(), "not scheduled: {}", reason.0);
        let mut json = to_json(pod);
        json["status"] = status;
        match self.store.apply(from_json(json)?).await {
            Ok(stored) => *pod = stored,
            Err(error) => tracing::warn!(pod = %pod.name(), "writing status: {error}"),
        }
        Ok(())
    }

    fn stop_pod(&mut self, key: &(String, String)) {
        if let Some((_, handle)) = self.pods.remove(key) {
            tracing::info!(pod = %key.1, namespace = %key.0, "stopping pod");
            self.applied_hosts.remove(key);
            self.applied_rules.remove(key);
            let ip = handle.ip.clone();
            self.stopping.insert(key.clone(), (ip, tokio::spawn(handle.stop())));
        }
    }

    async fn run_pods(&mut self, pods: &[Object], services: &[Object], config_maps: &[Object]) -> anyhow::Result<()> {
        let present: HashMap<(String, String), String> = pods.iter().map(|pod| (pod_key(pod), uid(pod))).collect();
        // Pods gone from the store, or replaced by a new object of the same name, stop.
        let gone: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(key, (running_uid, _))| present.get(*key) != Some(running_uid))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.stop_pod(&key);
        }
        if pods.is_empty() {
            return Ok(());
        }
        let secrets = self.store.list(&objects::secrets()).await?;
        for pod in pods {
            let key = pod_key(pod);
            if self.pods.contains_key(&key) {
                // Secret and ConfigMap volumes follow their objects while the pod runs.
                match volumes::refresh(&self.context.layout, pod, &secrets, config_maps) {
                    Ok(changed) if !changed.is_empty() => {
                        tracing::info!(pod = %pod.name(), namespace = %pod.namespace(), volumes = ?changed, "volumes updated");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(pod = %pod.name(), "updating volumes: {error:#}"),
                }
                continue;
            }
            if self.stopping.contains_key(&key) {
                continue;
            }
            let Some(endpoint) = PodEndpoint::from_pod(pod) else { continue };
            if let Err(reason) = objects::validate_identity(pod) {
                tracing::warn!("not running pod: {reason}");
                continue;
            }
            let hosts =
                services::hosts_file(pod.namespace(), pod.name(), &endpoint.ip, services, &self.plan.control_hosts());
            let service_env = service_env(pod.namespace(), services);
            tracing::info!(pod = %pod.name(), namespace = %pod.namespace(), ip = %endpoint.ip, "starting pod");
            let handle = pod::start(
                self.context.clone(),
                PodInputs {
                    pod: pod.clone(),
                    ip: endpoint.ip.clone(),
                    hosts: hosts.clone(),
                    service_env,
                    secrets: secrets.clone(),
                    config_maps: config_maps.to_vec(),
                },
            );
            self.applied_hosts.insert(key.clone(), hosts);
            self.pods.insert(key, (uid(pod), handle));
        }
        Ok(())
    }

    /// Writes Pod status from what runs; returns the pods as stored.
    async fn report_pod_status(&self, mut pods: Vec<Object>) -> anyhow::Result<Vec<Object>> {
        for pod in &mut pods {
            let Some((running_uid, handle)) = self.pods.get(&pod_key(pod)) else { continue };
            let status = status_json(&handle.state(), &handle.ip);
            if pod.body.get("status") == Some(&status) {
                continue;
            }
            // Re-read: a pod deleted (or replaced) meanwhile must not come back.
            let Some(mut current) = self.store.get(&pod.key()).await? else { continue };
            if uid(&current) != *running_uid {
                continue;
            }
            current.body.insert("status".to_string(), status);
            match self.store.apply(current).await {
                Ok(stored) => *pod = stored,
                Err(error) => tracing::warn!(pod = %pod.name(), "writing status: {error}"),
            }
        }
        Ok(pods)
    }

    async fn reconcile_endpoints(&self, services: &[Object], pods: &[Object]) -> anyhow::Result<Vec<Object>> {
        let endpoints_kind = objects::endpoints();
        let mut existing: BTreeMap<(String, String), Object> =
            self.store.list(&endpoints_kind).await?.into_iter().map(|object| (pod_key(&object), object)).collect();
        let pod_endpoints: Vec<PodEndpoint> = pods.iter().filter_map(PodEndpoint::from_pod).collect();
        let mut result = Vec::new();
        for service in services {
            let Some(desired) = services::endpoints_for(service, &pod_endpoints) else {
                // A Service without a selector keeps the Endpoints written for it by hand.
                if let Some(manual) = existing.remove(&pod_key(service)) {
                    result.push(manual);
                }
                continue;
            };
            match existing.remove(&pod_key(service)) {
                Some(current) if current.body.get("subsets") == desired.get("subsets") => result.push(current),
                _ => match self.store.apply(from_json(desired)?).await {
                    Ok(stored) => result.push(stored),
                    Err(error) => tracing::warn!(service = %service.name(), "writing Endpoints: {error}"),
                },
            }
        }
        // Endpoints left over belong to Services that are gone — unless the Service arrived
        // after this pass listed Services (Endpoints written by hand with their Service).
        for object in existing.into_values() {
            let service = objects::key("", "Service", object.namespace(), object.name());
            if !matches!(self.store.get(&service).await, Ok(None)) {
                result.push(object);
                continue;
            }
            log_failure(
                &format!("deleting Endpoints {}", object.name()),
                self.store.delete(&object.key()).await.map(drop).map_err(Into::into),
            );
        }
        Ok(result)
    }

    /// Updates the host's and every running pod's ClusterIP rules, and the pods' `/etc/hosts`.
    async fn reconcile_networking(&mut self, services: &[Object], endpoints: &[Object], pods: &[Object]) {
        let host_rules =
            services::dnat_rules_in((egress::SERVICES_CHAIN, egress::NO_ENDPOINTS_CHAIN), services, endpoints);
        if self.applied_host_rules.as_ref() != Some(&host_rules) {
            let to_apply = host_rules.clone();
            match tokio::task::spawn_blocking(move || egress::install_service_rules(&to_apply)).await {
                Ok(Ok(())) => self.applied_host_rules = Some(host_rules),
                Ok(Err(error)) => tracing::warn!("the host's ClusterIP rules: {error:#}"),
                Err(error) => tracing::warn!("the host's ClusterIP rules: {error}"),
            }
        }
        let rules = services::dnat_rules(services, endpoints);
        for pod in pods {
            let key = pod_key(pod);
            let Some((_, handle)) = self.pods.get(&key) else { continue };
            let hosts =
                services::hosts_file(pod.namespace(), pod.name(), &handle.ip, services, &self.plan.control_hosts());
            if self.applied_hosts.get(&key) != Some(&hosts) {
                let path = net::etc_netns_dir(&handle.netns).join("hosts");
                // Written in place: the file is bind-mounted into the pod's containers.
                if path.exists() && std::fs::write(&path, &hosts).is_ok() {
                    self.applied_hosts.insert(key.clone(), hosts);
                }
            }
            if !handle.state().initialized || self.applied_rules.get(&key) == Some(&rules) {
                continue;
            }
            let netns = handle.netns.clone();
            let to_apply = rules.clone();
            let applied = tokio::task::spawn_blocking(move || services::install_rules(&netns, &to_apply)).await;
            match applied {
                Ok(Ok(())) => {
                    self.applied_rules.insert(key, rules.clone());
                }
                Ok(Err(error)) => tracing::warn!(pod = %key.1, "ClusterIP rules: {error:#}"),
                Err(error) => tracing::warn!(pod = %key.1, "ClusterIP rules: {error}"),
            }
        }
    }
}

/// The ReplicaSet a pod belongs to.
/// The running pods with a sidecar (`istio-proxy`): namespace, name and address.
fn sidecars(pods: &[Object]) -> Vec<(String, String, String)> {
    pods.iter()
        .filter(|pod| {
            pod.body["spec"]["containers"]
                .as_array()
                .is_some_and(|containers| containers.iter().any(|container| container["name"] == "istio-proxy"))
        })
        .filter_map(|pod| {
            let ip = pod.body["status"]["podIP"].as_str().filter(|ip| !ip.is_empty())?;
            Some((
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
                ip.to_string(),
            ))
        })
        .collect()
}

fn owner_set(pod: &Object) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|owner| owner.kind == "ReplicaSet" && owner.controller == Some(true))
        .map(|owner| owner.name.clone())
}

fn is_deployment_pod(pod: &Object) -> bool {
    labels(pod).contains_key("pod-template-hash")
}

fn is_hash(text: &str) -> bool {
    text.len() == 10 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// A pod template's hash (10 hex digits), naming its ReplicaSet as Kubernetes does.
pub fn template_hash(template: &Value) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    format!("{:016x}", istio_config::hash::fnv1a64(text.bytes()))[..10].to_string()
}

/// Five characters as Kubernetes appends to generated names.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// `NAME_SERVICE_HOST` and `NAME_SERVICE_PORT` for the namespace's services.
fn service_env(namespace: &str, services: &[Object]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for service in services.iter().filter(|service| service.namespace() == namespace) {
        let Some(ip) =
            service.spec().get("clusterIP").and_then(Value::as_str).filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
        else {
            continue;
        };
        let name = service.name().to_uppercase().replace('-', "_");
        env.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        if let Some(port) = service.spec().pointer("/ports/0/port").and_then(Value::as_u64) {
            env.push((format!("{name}_SERVICE_PORT"), port.to_string()));
        }
    }
    env
}

/// A Pod's `status` from its runtime state.
fn status_json(state: &PodState, ip: &str) -> Value {
    let ready = state.ready();
    let containers: Vec<Value> = state
        .containers
        .iter()
        .map(|(name, container)| {
            let state_value = if container.running {
                json!({"running": {}})
            } else {
                json!({"waiting": {"reason": if container.restarts > 0 { "CrashLoopBackOff" } else { "ContainerCreating" }}})
            };
            json!({"name": name, "ready": container.ready, "restartCount": container.restarts, "state": state_value})
        })
        .collect();
    let mut status = json!({
        "phase": state.phase,
        "podIP": ip,
        "hostIP": net::HOST_ADDRESS.to_string(),
        "conditions": [
            {"type": "Initialized", "status": if state.initialized { "True" } else { "False" }},
            {"type": "Ready", "status": if ready { "True" } else { "False" }},
        ],
        "containerStatuses": containers,
    });
    if !state.message.is_empty() {
        status["message"] = json!(state.message);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_are_stable_and_look_like_kubernetes() {
        let template = json!({"metadata": {"labels": {"app": "a"}}});
        assert_eq!(template_hash(&template), template_hash(&template.clone()));
        assert!(is_hash(&template_hash(&template)));
        assert_ne!(template_hash(&template), template_hash(&json!({})));
        assert_eq!(random_suffix().len(), 5);
    }
}
