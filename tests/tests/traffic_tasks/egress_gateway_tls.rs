//! Egress gateways and TLS: HTTPS through `istio-egressgateway` by SNI passthrough, the gateway
//! originating TLS, and the gateway originating mutual TLS to an nginx that requires client
//! certificates, with the client certificates mounted as 1.4's task mounts them
//! (`values.gateways.istio-egressgateway.secretVolumes`).

use e2e::outside::{OutsideHost, NGINX_ADDRESS};

use super::*;

/// The demo's values for the mutual-TLS task: the egress gateway's secret volumes, the chart's
/// two and nginx's client certificate and CA, as 1.4's task sets them.
pub(crate) fn egress_gateway_secret_volumes() -> Vec<String> {
    let volumes = [
        ("egressgateway-certs", "istio-egressgateway-certs", "/etc/istio/egressgateway-certs"),
        ("egressgateway-ca-certs", "istio-egressgateway-ca-certs", "/etc/istio/egressgateway-ca-certs"),
        ("nginx-client-certs", "nginx-client-certs", "/etc/nginx-client-certs"),
        ("nginx-ca-certs", "nginx-ca-certs", "/etc/nginx-ca-certs"),
    ];
    let mut sets = Vec::new();
    for (index, (name, secret, path)) in volumes.iter().enumerate() {
        let at = format!("values.gateways.istio-egressgateway.secretVolumes[{index}]");
        sets.push(format!("{at}.name={name}"));
        sets.push(format!("{at}.secretName={secret}"));
        sets.push(format!("{at}.mountPath={path}"));
    }
    sets
}

/// The outside `edition.cnn.com` over HTTPS only, logging the scheme and SNI of each request.
const EDITION_CNN_HTTPS: &str = "log_format sni '$scheme $ssl_server_name $request $status';
server {
  listen 443 ssl;
  access_log {dir}/access.log sni;
  ssl_certificate {dir}/tls.crt;
  ssl_certificate_key {dir}/tls.key;
  location / {
    return 200 'the politics page\\n';
  }
}
";

/// The egress gateway's access-log lines that name `cluster`.
fn gateway_lines(mesh: &LocalMesh, cluster: &str) -> Vec<String> {
    let (_, out, _) =
        mesh.istioctl(&["x", "local", "logs", "-n", "istio-system", "istio-egressgateway", "-c", "istio-proxy"]);
    out.lines().filter(|line| line.contains(cluster)).map(str::to_string).collect()
}

fn sleep_curl(mesh: &LocalMesh, args: &[&str]) -> String {
    let command: Vec<&str> = ["curl", "-s", "--max-time", "10"].into_iter().chain(args.iter().copied()).collect();
    mesh.try_exec("sleep", "sleep", &command).1
}

fn start_outside_cnn(mesh: &LocalMesh) -> OutsideHost {
    let mut outside = OutsideHost::start();
    outside.serve_nginx_with_certificate(EDITION_CNN_HTTPS, &["edition.cnn.com"], &[443]);
    mesh.set_external_hosts(&format!("{NGINX_ADDRESS} edition.cnn.com\n"));
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);
    outside
}

/// Egress gateway for HTTPS traffic: the application's TLS to `edition.cnn.com` goes through
/// the egress gateway by SNI, unopened; the gateway's log has the connection on the
/// `outbound|443||edition.cnn.com` cluster and the server saw the application's SNI.
pub(crate) fn egress_gateway_https(mesh: &LocalMesh) {
    let outside = start_outside_cnn(mesh);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 443
    name: tls
    protocol: TLS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: tls
      protocol: TLS
    hosts:
    - edition.cnn.com
    tls:
      mode: PASSTHROUGH
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - mesh
  - istio-egressgateway
  tls:
  - match:
    - gateways:
      - mesh
      port: 443
      sni_hosts:
      - edition.cnn.com
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 443
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
      sni_hosts:
      - edition.cnn.com
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 443
      weight: 100
",
    );
    until("HTTPS to edition.cnn.com through the egress gateway", Duration::from_secs(60), || {
        let status =
            sleep_curl(mesh, &["-k", "-o", "/dev/null", "-w", "%{http_code}", "https://edition.cnn.com/politics"]);
        let lines = gateway_lines(mesh, "outbound|443||edition.cnn.com");
        if status == "200" && !lines.is_empty() {
            Ok(())
        } else {
            Err(format!("status {status}, {} gateway log lines", lines.len()))
        }
    });
    let log = outside.nginx_log();
    assert!(log.lines().any(|line| line == "https edition.cnn.com GET /politics HTTP/1.1 200"), "{log}");
    mesh.set_external_hosts("");
}

/// TLS origination by the egress gateway: plain HTTP from the application to the gateway, the
/// gateway's own TLS to `edition.cnn.com:443`; 200 at once, the gateway's log line on
/// `outbound|443||edition.cnn.com`, and the server saw HTTPS.
pub(crate) fn egress_gateway_tls_origination(mesh: &LocalMesh) {
    let outside = start_outside_cnn(mesh);
    mesh.apply_yaml(
        "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: https-port-for-tls-origination
      protocol: HTTPS
    hosts:
    - edition.cnn.com
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 80
        tls:
          mode: ISTIO_MUTUAL
          sni: edition.cnn.com
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - edition.cnn.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: edition.cnn.com
        port:
          number: 443
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-tls-for-edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: SIMPLE # initiates HTTPS for connections to edition.cnn.com
",
    );
    until("http://edition.cnn.com/politics, TLS from the egress gateway", Duration::from_secs(60), || {
        let status = sleep_curl(mesh, &["-o", "/dev/null", "-w", "%{http_code}", "http://edition.cnn.com/politics"]);
        let lines = gateway_lines(mesh, "outbound|443||edition.cnn.com");
        if status == "200" && lines.iter().any(|line| line.contains("GET /politics")) {
            Ok(())
        } else {
            Err(format!("status {status}, gateway log lines {lines:?}"))
        }
    });
    let log = outside.nginx_log();
    assert!(log.lines().any(|line| line.starts_with("https ") && line.contains("GET /politics")), "{log}");
    mesh.delete("destinationrules", "originate-tls-for-edition-cnn-com");
    mesh.set_external_hosts("");
}

/// The task's nginx: mutual TLS only, clients need a certificate from the task's CA.
const MTLS_NGINX_CONF: &str = "events {
}

http {
  log_format main '$remote_addr - $remote_user [$time_local]  $status '
  '\"$request\" $body_bytes_sent \"$http_referer\" '
  '\"$http_user_agent\" \"$http_x_forwarded_for\"';
  access_log /var/log/nginx/access.log main;
  error_log  /var/log/nginx/error.log;

  server {
    listen 443 ssl;

    root /usr/share/nginx/html;
    index index.html;

    server_name nginx.example.com;
    ssl_certificate /etc/nginx-server-certs/tls.crt;
    ssl_certificate_key /etc/nginx-server-certs/tls.key;
    ssl_client_certificate /etc/nginx-ca-certs/ca-chain.cert.pem;
    ssl_verify_client on;
  }
}
";

/// The task's `my-nginx` in `mesh-external`, unchanged.
const MTLS_NGINX: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-nginx
  namespace: mesh-external
  labels:
    run: my-nginx
spec:
  ports:
  - port: 443
    protocol: TCP
  selector:
    run: my-nginx
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
  namespace: mesh-external
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 1
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      containers:
      - name: my-nginx
        image: nginx
        ports:
        - containerPort: 443
        volumeMounts:
        - name: nginx-config
          mountPath: /etc/nginx
          readOnly: true
        - name: nginx-server-certs
          mountPath: /etc/nginx-server-certs
          readOnly: true
        - name: nginx-ca-certs
          mountPath: /etc/nginx-ca-certs
          readOnly: true
      volumes:
      - name: nginx-config
        configMap:
          name: nginx-configmap
      - name: nginx-server-certs
        secret:
          secretName: nginx-server-certs
      - name: nginx-ca-certs
        secret:
          secretName: nginx-ca-certs
";

/// The task's ServiceEntry and VirtualService that send `nginx.example.com` to the nginx in
/// `mesh-external`, unchanged.
const NGINX_EXAMPLE_COM: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: nginx
spec:
  hosts:
  - nginx.example.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
  endpoints:
  - address: my-nginx.mesh-external.svc.cluster.local
    ports:
      https: 443
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: nginx
spec:
  hosts:
  - nginx.example.com
  tls:
  - match:
    - port: 443
      sni_hosts:
      - nginx.example.com
    route:
    - destination:
        host: nginx.example.com
        port:
          number: 443
      weight: 100
";

/// The task's Gateway, DestinationRules and VirtualService for mutual TLS origination.
const MTLS_ORIGINATION: &str = "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - nginx.example.com
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: egressgateway-for-nginx
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: nginx
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 443
        tls:
          mode: ISTIO_MUTUAL
          sni: nginx.example.com
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-nginx-through-egress-gateway
spec:
  hosts:
  - nginx.example.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: nginx
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
    route:
    - destination:
        host: nginx.example.com
        port:
          number: 443
      weight: 100
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: originate-mtls-for-nginx
spec:
  host: nginx.example.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: MUTUAL
        clientCertificate: /etc/nginx-client-certs/tls.crt
        privateKey: /etc/nginx-client-certs/tls.key
        caCertificates: /etc/nginx-ca-certs/ca-chain.cert.pem
        sni: nginx.example.com
";

/// Mutual TLS origination by the egress gateway: nginx in `mesh-external` (no sidecar), known
/// to the mesh as `nginx.example.com` by a ServiceEntry, asks every client for a certificate
/// from the task's CA; the client certificate and CA are Secrets in `istio-system` that the
/// egress gateway mounts at `/etc/nginx-client-certs` and `/etc/nginx-ca-certs`. Through the
/// egress gateway `http://nginx.example.com` is nginx's welcome page and the gateway's log has
/// the request on the nginx cluster; without the client certificate nginx refuses.
pub(crate) fn egress_gateway_mutual_tls_origination(mesh: &LocalMesh) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = e2e::certs::TestCa::new();
    let ca_chain = ca.write_root(dir.path(), "ca-chain.cert.pem");
    let server = ca.issue_files(dir.path(), "nginx.example.com", &["nginx.example.com"]);
    let client = ca.issue_files(dir.path(), "nginx-client", &["client.example.com"]);
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, MTLS_NGINX_CONF).expect("nginx.conf");
    let path = |path: &std::path::Path| path.display().to_string();
    let ca_file = format!("--from-file={}", path(&ca_chain));
    for args in [
        vec!["create", "namespace", "mesh-external"],
        vec![
            "create",
            "-n",
            "mesh-external",
            "secret",
            "tls",
            "nginx-server-certs",
            "--key",
            &path(&server.key),
            "--cert",
            &path(&server.cert),
        ],
        vec!["create", "-n", "mesh-external", "secret", "generic", "nginx-ca-certs", &ca_file],
        vec![
            "create",
            "-n",
            "mesh-external",
            "configmap",
            "nginx-configmap",
            &format!("--from-file=nginx.conf={}", path(&conf)),
        ],
        vec![
            "create",
            "-n",
            "istio-system",
            "secret",
            "tls",
            "nginx-client-certs",
            "--key",
            &path(&client.key),
            "--cert",
            &path(&client.cert),
        ],
        vec!["create", "-n", "istio-system", "secret", "generic", "nginx-ca-certs", &ca_file],
    ] {
        let (code, out, err) = mesh.istioctl(&[&["x", "local"][..], &args].concat());
        assert_eq!(code, 0, "{}: {out}{err}", args.join(" "));
    }
    mesh.apply_yaml(MTLS_NGINX);
    mesh.wait_ready_labelled("run", "my-nginx", "mesh-external", 1);
    mesh.apply_yaml(NGINX_EXAMPLE_COM);
    mesh.apply(&sample("sleep/sleep.yaml"));
    mesh.wait_ready("sleep", "default", 1);

    // The certificates are in the running egress gateway, as the task checks with `ls`.
    let gateway_pod = mesh.pod_name("istio", "egressgateway").expect("the egress gateway's pod");
    until("the client certificates in the egress gateway", Duration::from_secs(30), || {
        let (_, listing, err) = mesh.istioctl(&[
            "x",
            "local",
            "exec",
            &gateway_pod,
            "-n",
            "istio-system",
            "-c",
            "istio-proxy",
            "--",
            "ls",
            "/etc/nginx-client-certs",
            "/etc/nginx-ca-certs",
        ]);
        if ["tls.crt", "tls.key", "ca-chain.cert.pem"].iter().all(|file| listing.contains(file)) {
            Ok(())
        } else {
            Err(format!("{listing}{err}"))
        }
    });

    mesh.apply_yaml(MTLS_ORIGINATION);
    let cluster = "outbound|443||nginx.example.com";
    // Any address: the sidecar routes by the Host header, as the task's `--resolve` relies on.
    let resolve = ["--resolve", "nginx.example.com:80:1.1.1.1", "http://nginx.example.com"];
    until("nginx's page through the egress gateway's mutual TLS", Duration::from_secs(60), || {
        let page = sleep_curl(mesh, &resolve);
        let lines = gateway_lines(mesh, cluster);
        if page.contains("Welcome to nginx!") && lines.iter().any(|line| line.contains("GET / ")) {
            Ok(())
        } else {
            Err(format!("page {:?}, gateway log lines {lines:?}", page.lines().find(|l| l.contains("<title>"))))
        }
    });

    // Without the client certificate nginx says so.
    mesh.delete("destinationrules", "originate-mtls-for-nginx");
    mesh.apply_yaml(&MTLS_ORIGINATION.replace("mode: MUTUAL", "mode: SIMPLE").replace(
        "        clientCertificate: /etc/nginx-client-certs/tls.crt\n        privateKey: /etc/nginx-client-certs/tls.key\n",
        "",
    ));
    until("nginx refuses the gateway without a client certificate", Duration::from_secs(60), || {
        let page = sleep_curl(mesh, &resolve);
        if page.contains("No required SSL certificate was sent") {
            Ok(())
        } else {
            Err(page)
        }
    });

    for name in ["egressgateway-for-nginx", "originate-mtls-for-nginx"] {
        mesh.delete("destinationrules", name);
    }
    for (kind, name) in [("deployments", "my-nginx"), ("services", "my-nginx"), ("configmaps", "nginx-configmap")] {
        mesh.delete_in("mesh-external", kind, name);
    }
    for secret in ["nginx-server-certs", "nginx-ca-certs"] {
        mesh.delete_in("mesh-external", "secrets", secret);
    }
    for secret in ["nginx-client-certs", "nginx-ca-certs"] {
        mesh.delete_in("istio-system", "secrets", secret);
    }
}
