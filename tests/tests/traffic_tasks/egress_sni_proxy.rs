//! Egress using wildcard hosts, arbitrary domains: an egress gateway with an nginx SNI proxy
//! beside its proxy (`istio-egressgateway-with-sni-proxy`), as 1.4's task sets it up, in both of
//! the task's tabs. With mutual TLS to the gateway, the sidecars run istio-proxy's
//! `forward_downstream_sni` and the gateway its `sni_verifier`; our proxy has both. A stock Envoy
//! has neither: on that plane the mutual-TLS tab is skipped, and the check is that the sidecar's
//! refusal of the filter (a NACK) leaves the config it had serving. Without mutual TLS the gateway
//! passes the application's TLS through by SNI, which any Envoy does.

use super::*;

/// The task's `sni-proxy.conf`, with what this host needs: Debian builds nginx's stream module
/// as a dynamic module (the official image has it built in), there is no 8.8.8.8 here (the
/// pods' own resolver answers instead), and the logs go to the container's output, where the
/// official image's log files point.
fn sni_proxy_conf(resolver: &str) -> String {
    format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;
user www-data;

events {{
}}

stream {{
  log_format log_stream '$remote_addr [$time_local] $protocol [$ssl_preread_server_name]'
  '$status $bytes_sent $bytes_received $session_time';

  access_log /dev/stdout log_stream;
  error_log  /dev/stderr;

  # tcp forward proxy by SNI
  server {{
    resolver {resolver} ipv6=off;
    listen       127.0.0.1:8443;
    proxy_pass   $ssl_preread_server_name:443;
    ssl_preread  on;
  }}
}}
"
    )
}

/// What the task's `helm template` of the gateway chart makes for
/// `istio-egressgateway-with-sni-proxy` with its values (labels, port 443, the two certificate
/// Secret volumes, the ConfigMap volume and the `sni-proxy` container).
const SNI_PROXY_GATEWAY: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: istio-egressgateway-with-sni-proxy-service-account
  namespace: istio-system
  labels:
    app: istio-egressgateway-with-sni-proxy
    istio: egressgateway-with-sni-proxy
---
apiVersion: v1
kind: Service
metadata:
  name: istio-egressgateway-with-sni-proxy
  namespace: istio-system
  labels:
    app: istio-egressgateway-with-sni-proxy
    istio: egressgateway-with-sni-proxy
spec:
  type: ClusterIP
  selector:
    app: istio-egressgateway-with-sni-proxy
    istio: egressgateway-with-sni-proxy
  ports:
  - name: https
    port: 443
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-egressgateway-with-sni-proxy
  namespace: istio-system
  labels:
    app: istio-egressgateway-with-sni-proxy
    istio: egressgateway-with-sni-proxy
spec:
  replicas: 1
  selector:
    matchLabels:
      app: istio-egressgateway-with-sni-proxy
      istio: egressgateway-with-sni-proxy
  template:
    metadata:
      labels:
        app: istio-egressgateway-with-sni-proxy
        istio: egressgateway-with-sni-proxy
      annotations:
        sidecar.istio.io/inject: \"false\"
    spec:
      serviceAccountName: istio-egressgateway-with-sni-proxy-service-account
      containers:
      - name: istio-proxy
        image: docker.io/istio/proxyv2:1.4.10
        ports:
        - containerPort: 443
        - containerPort: 15090
          protocol: TCP
          name: http-envoy-prom
        args:
        - proxy
        - router
        - --domain
        - $(POD_NAMESPACE).svc.cluster.local
        - --log_output_level=default:info
        - --drainDuration
        - 45s
        - --parentShutdownDuration
        - 1m0s
        - --connectTimeout
        - 10s
        - --serviceCluster
        - istio-egressgateway-with-sni-proxy
        - --zipkinAddress
        - zipkin.istio-system:9411
        - --proxyAdminPort
        - \"15000\"
        - --statusPort
        - \"15020\"
        - --controlPlaneAuthPolicy
        - NONE
        - --discoveryAddress
        - istio-pilot.istio-system:15010
        readinessProbe:
          failureThreshold: 30
          httpGet:
            path: /healthz/ready
            port: 15020
          initialDelaySeconds: 1
          periodSeconds: 2
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: INSTANCE_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: HOST_IP
          valueFrom:
            fieldRef:
              fieldPath: status.hostIP
        - name: SERVICE_ACCOUNT
          valueFrom:
            fieldRef:
              fieldPath: spec.serviceAccountName
        - name: ISTIO_META_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: ISTIO_META_CONFIG_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: ISTIO_METAJSON_LABELS
          value: |
            {\"app\":\"istio-egressgateway-with-sni-proxy\",\"istio\":\"egressgateway-with-sni-proxy\"}
        - name: ISTIO_META_CLUSTER_ID
          value: Kubernetes
        - name: SDS_ENABLED
          value: \"false\"
        - name: ISTIO_META_WORKLOAD_NAME
          value: istio-egressgateway-with-sni-proxy
        - name: ISTIO_META_OWNER
          value: kubernetes://apis/apps/v1/namespaces/istio-system/deployments/istio-egressgateway-with-sni-proxy
        - name: ISTIO_META_ROUTER_MODE
          value: sni-dnat
        volumeMounts:
        - name: istio-envoy
          mountPath: /etc/istio/proxy
        - name: istio-certs
          mountPath: /etc/certs
          readOnly: true
        - name: egressgateway-certs
          mountPath: /etc/istio/egressgateway-certs
          readOnly: true
        - name: egressgateway-ca-certs
          mountPath: /etc/istio/egressgateway-ca-certs
          readOnly: true
      - name: sni-proxy
        image: nginx
        volumeMounts:
        - name: sni-proxy-config
          mountPath: /etc/nginx
          readOnly: true
      volumes:
      - name: istio-envoy
        emptyDir:
          medium: Memory
      - name: istio-certs
        secret:
          secretName: istio.istio-egressgateway-with-sni-proxy-service-account
          optional: true
      - name: egressgateway-certs
        secret:
          secretName: istio-egressgateway-certs
          optional: true
      - name: egressgateway-ca-certs
        secret:
          secretName: istio-egressgateway-ca-certs
          optional: true
      - name: sni-proxy-config
        configMap:
          name: egress-sni-proxy-configmap
";

/// The task's service entry for the SNI proxy (localhost:8443) and the rule that turns mutual
/// TLS off towards it, unchanged.
const SNI_PROXY_ENTRY: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: sni-proxy
spec:
  hosts:
  - sni-proxy.local
  location: MESH_EXTERNAL
  ports:
  - number: 8443
    name: tcp
    protocol: TCP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: disable-mtls-for-sni-proxy
spec:
  host: sni-proxy.local
  trafficPolicy:
    tls:
      mode: DISABLE
";

/// The task's `*.wikipedia.org` entry, unchanged.
const WIKIPEDIA_ENTRY: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: wikipedia
spec:
  hosts:
  - \"*.wikipedia.org\"
  ports:
  - number: 443
    name: tls
    protocol: TLS
";

/// The task's mutual-TLS gateway, destination rule and virtual service, unchanged.
const THROUGH_SNI_PROXY: &str = "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway-with-sni-proxy
spec:
  selector:
    istio: egressgateway-with-sni-proxy
  servers:
  - port:
      number: 443
      name: tls-egress
      protocol: TLS
    hosts:
    - \"*.wikipedia.org\"
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/cert-chain.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/root-cert.pem
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-wikipedia
spec:
  host: istio-egressgateway-with-sni-proxy.istio-system.svc.cluster.local
  subsets:
    - name: wikipedia
      trafficPolicy:
        loadBalancer:
          simple: ROUND_ROBIN
        portLevelSettings:
        - port:
            number: 443
          tls:
            mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-wikipedia-through-egress-gateway
spec:
  hosts:
  - \"*.wikipedia.org\"
  gateways:
  - mesh
  - istio-egressgateway-with-sni-proxy
  tls:
  - match:
    - gateways:
      - mesh
      port: 443
      sni_hosts:
      - \"*.wikipedia.org\"
    route:
    - destination:
        host: istio-egressgateway-with-sni-proxy.istio-system.svc.cluster.local
        subset: wikipedia
        port:
          number: 443
      weight: 100
  tcp:
  - match:
    - gateways:
      - istio-egressgateway-with-sni-proxy
      port: 443
    route:
    - destination:
        host: sni-proxy.local
        port:
          number: 8443
      weight: 100
";

/// The task's gateway, destination rule and virtual service with mutual TLS disabled, unchanged.
const THROUGH_SNI_PROXY_PASSTHROUGH: &str = "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
 name: istio-egressgateway-with-sni-proxy
spec:
 selector:
   istio: egressgateway-with-sni-proxy
 servers:
 - port:
     number: 443
     name: tls
     protocol: TLS
   hosts:
   - \"*.wikipedia.org\"
   tls:
     mode: PASSTHROUGH
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
 name: egressgateway-for-wikipedia
spec:
 host: istio-egressgateway-with-sni-proxy.istio-system.svc.cluster.local
 subsets:
   - name: wikipedia
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
 name: direct-wikipedia-through-egress-gateway
spec:
 hosts:
 - \"*.wikipedia.org\"
 gateways:
 - mesh
 - istio-egressgateway-with-sni-proxy
 tls:
 - match:
   - gateways:
     - mesh
     port: 443
     sni_hosts:
     - \"*.wikipedia.org\"
   route:
   - destination:
       host: istio-egressgateway-with-sni-proxy.istio-system.svc.cluster.local
       subset: wikipedia
       port:
         number: 443
     weight: 100
 - match:
   - gateways:
     - istio-egressgateway-with-sni-proxy
     port: 443
     sni_hosts:
     - \"*.wikipedia.org\"
   route:
   - destination:
       host: sni-proxy.local
       port:
         number: 8443
     weight: 100
";

/// The task's `forward-downstream-sni` EnvoyFilter (1.4's insert-filter form), unchanged.
pub(crate) const FORWARD_DOWNSTREAM_SNI: &str = "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: forward-downstream-sni
spec:
  filters:
  - listenerMatch:
      portNumber: 443
      listenerType: SIDECAR_OUTBOUND
    filterName: forward_downstream_sni
    filterType: NETWORK
    filterConfig: {}
";

/// The task's `egress-gateway-sni-verifier`. The 1.4 task applied it in `default`, where an
/// EnvoyFilter selects only `default`'s workloads, so it never reached the gateway; later
/// versions of the task apply it in the gateway's namespace, as here.
const SNI_VERIFIER: &str = "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: egress-gateway-sni-verifier
  namespace: istio-system
spec:
  workloadLabels:
    app: istio-egressgateway-with-sni-proxy
  filters:
  - listenerMatch:
      portNumber: 443
      listenerType: GATEWAY
    filterName: sni_verifier
    filterType: NETWORK
    filterConfig: {}
";

/// A container's log, as `kubectl logs -l istio=egressgateway-with-sni-proxy -c CONTAINER`.
pub(crate) fn gateway_log(mesh: &LocalMesh, container: &str) -> String {
    mesh.istioctl(&["x", "local", "logs", "-n", "istio-system", "istio-egressgateway-with-sni-proxy", "-c", container])
        .1
}

/// The pods' resolver (the cluster DNS), from the sleep pod's `/etc/resolv.conf`.
fn cluster_resolver(mesh: &LocalMesh) -> String {
    let resolv = mesh.exec("sleep", "sleep", &["cat", "/etc/resolv.conf"]);
    resolv
        .lines()
        .find_map(|line| line.strip_prefix("nameserver "))
        .map(|address| address.trim().to_string())
        .unwrap_or_else(|| panic!("no nameserver in the pods' resolv.conf:\n{resolv}"))
}

/// Which of the task's tabs: mutual TLS between the sidecars and the gateway, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    MutualTls,
    Passthrough,
}

/// The gateway's Deployment as the chart renders it for the plane: with a stock Envoy, the
/// proxy runs it (`--binaryPath`), as the installation's own gateways do.
fn gateway_manifest(plane: Plane) -> String {
    match plane {
        Plane::Builtin => SNI_PROXY_GATEWAY.to_string(),
        Plane::Envoy => SNI_PROXY_GATEWAY.replacen(
            "        - router\n",
            &format!(
                "        - router\n        - --binaryPath\n        - {}\n",
                e2e::envoy::native_envoy_binary().display()
            ),
            1,
        ),
    }
}

/// Sets up the gateway with the SNI proxy and routes `*.wikipedia.org` through it as `tab`
/// says; both languages arrive, the gateway's log has each connection to `sni-proxy.local` with
/// its SNI, and nginx logs the SNI it forwarded to. With mutual TLS, the gateway's
/// `sni_verifier` saw the inner SNIs. Then everything the task created is deleted again.
pub(crate) fn through_sni_proxy(mesh: &LocalMesh, tab: Tab, titles: impl Fn() -> Vec<String>, expected: Vec<String>) {
    set_up_sni_proxy(mesh, tab);
    let gateway = mesh.pod_name("app", "istio-egressgateway-with-sni-proxy").expect("the SNI-proxy gateway's pod");
    until("both languages through the SNI proxy", Duration::from_secs(90), || {
        let seen = titles();
        let log = gateway_log(mesh, "istio-proxy");
        let through = |host: &str| {
            log.lines().any(|line| {
                line.contains("outbound|8443||sni-proxy.local") && line.split_whitespace().any(|word| word == host)
            })
        };
        if seen == expected && through("en.wikipedia.org") && through("de.wikipedia.org") {
            Ok(())
        } else {
            let lines: Vec<&str> = log.lines().filter(|line| line.contains("sni-proxy.local")).collect();
            Err(format!("titles {seen:?}; gateway lines to sni-proxy.local {lines:?}"))
        }
    });
    let nginx = gateway_log(mesh, "sni-proxy");
    for host in ["en.wikipedia.org", "de.wikipedia.org"] {
        assert!(nginx.contains(&format!("TCP [{host}]200")), "the SNI proxy's log lacks {host}:\n{nginx}");
    }
    if tab == Tab::MutualTls {
        verified_by_the_gateway(mesh, &gateway, &titles);
    }
    remove_sni_proxy(mesh);
}

/// The task's setup for arbitrary domains: the SNI proxy's ConfigMap, the gateway with it, the
/// entries for `sni-proxy.local` and `*.wikipedia.org`, and the routing of `tab`.
pub(crate) fn set_up_sni_proxy(mesh: &LocalMesh, tab: Tab) {
    mesh.apply_yaml(&format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: egress-sni-proxy-configmap
  namespace: istio-system
data:
  nginx.conf: {}
",
        serde_json::to_string(&sni_proxy_conf(&cluster_resolver(mesh))).expect("JSON string")
    ));
    mesh.apply_yaml(&gateway_manifest(mesh.plane));
    mesh.wait_ready("istio-egressgateway-with-sni-proxy", "istio-system", 1);
    mesh.apply_yaml(SNI_PROXY_ENTRY);
    mesh.apply_yaml(WIKIPEDIA_ENTRY);
    match tab {
        Tab::MutualTls => {
            mesh.apply_yaml(THROUGH_SNI_PROXY);
            mesh.apply_yaml(FORWARD_DOWNSTREAM_SNI);
            mesh.apply_yaml(SNI_VERIFIER);
        }
        Tab::Passthrough => mesh.apply_yaml(THROUGH_SNI_PROXY_PASSTHROUGH),
    }
}

/// The gateway's `sni_verifier` compares the inner and outer SNI of each connection, once the
/// EnvoyFilter that adds it has reached the gateway.
fn verified_by_the_gateway(mesh: &LocalMesh, gateway: &str, titles: impl Fn() -> Vec<String>) {
    let stats = || mesh.proxy_admin(gateway, "istio-system", "stats");
    let stat = |stats: &str, name: &str| {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("sni_verifier.{name}: ")))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    until("the gateway's sni_verifier checks the connections", Duration::from_secs(60), || {
        titles();
        let now = stats();
        let (found, mismatched) = (stat(&now, "inner_sni_found"), stat(&now, "snis_do_not_match"));
        if mismatched > 0 {
            panic!("the sni_verifier refused the application's own connections:\n{now}");
        }
        if found >= 2 {
            Ok(())
        } else {
            Err(format!("sni_verifier.inner_sni_found: {found}"))
        }
    });
}

/// The task's cleanup: its configuration, then the gateway with the SNI proxy.
pub(crate) fn remove_sni_proxy(mesh: &LocalMesh) {
    mesh.delete("envoyfilters", "forward-downstream-sni");
    mesh.delete_in("istio-system", "envoyfilters", "egress-gateway-sni-verifier");
    mesh.delete("gateways", "istio-egressgateway-with-sni-proxy");
    mesh.delete("virtualservices", "direct-wikipedia-through-egress-gateway");
    for name in ["egressgateway-for-wikipedia", "disable-mtls-for-sni-proxy"] {
        mesh.delete("destinationrules", name);
    }
    for name in ["wikipedia", "sni-proxy"] {
        mesh.delete("serviceentries", name);
    }
    for (kind, name) in [
        ("deployments", "istio-egressgateway-with-sni-proxy"),
        ("services", "istio-egressgateway-with-sni-proxy"),
        ("serviceaccounts", "istio-egressgateway-with-sni-proxy-service-account"),
        ("configmaps", "egress-sni-proxy-configmap"),
    ] {
        mesh.delete_in("istio-system", kind, name);
    }
}

/// A stock Envoy has no `forward_downstream_sni`: the sidecar refuses the listener update the
/// EnvoyFilter brings (Pilot hears a NACK), and keeps serving what it had.
pub(crate) fn refused_by_a_stock_envoy(mesh: &LocalMesh, titles: impl Fn() -> Vec<String>, expected: Vec<String>) {
    println!(
        "egress wildcard hosts: the SNI-proxy variant is skipped with a stock Envoy: it has no \
         forward_downstream_sni or sni_verifier filter (istio-proxy's own)"
    );
    let sleep = mesh.pod_name("app", "sleep").expect("the sleep pod");
    let rejected = || mesh.proxy_stat(&sleep, "listener_manager.lds.update_rejected");
    let before = rejected();
    mesh.apply_yaml(FORWARD_DOWNSTREAM_SNI);
    until("the sidecar refuses forward_downstream_sni", Duration::from_secs(60), || {
        let now = rejected();
        if now > before {
            Ok(())
        } else {
            Err(format!("lds.update_rejected still {now}"))
        }
    });
    assert_eq!(titles(), expected, "the sidecar's earlier listeners should still serve");
    mesh.delete("envoyfilters", "forward-downstream-sni");
}
