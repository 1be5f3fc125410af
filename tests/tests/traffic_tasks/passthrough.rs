//! Ingress gateway without TLS termination: an nginx in the mesh serves its own certificate,
//! and the ingress gateway passes TLS for `nginx.example.com` through to it by SNI.

use super::*;

/// The task's `nginx.conf`, unchanged.
const NGINX_CONF: &str = "events {
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
  }
}
";

/// The task's `my-nginx` Service and Deployment, unchanged.
const MY_NGINX: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-nginx
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
      volumes:
      - name: nginx-config
        configMap:
          name: nginx-configmap
      - name: nginx-server-certs
        secret:
          secretName: nginx-server-certs
";

/// The task's Gateway and VirtualService, unchanged.
const PASSTHROUGH: &str = "apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: PASSTHROUGH
    hosts:
    - nginx.example.com
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: nginx
spec:
  hosts:
  - nginx.example.com
  gateways:
  - mygateway
  tls:
  - match:
    - port: 443
      sni_hosts:
      - nginx.example.com
    route:
    - destination:
        host: my-nginx
        port:
          number: 443
";

/// The first certificate of a PEM text, without line breaks.
fn first_certificate(pem: &str) -> String {
    let start = pem.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let end = pem[start..].find("-----END CERTIFICATE-----").expect("its end") + start;
    pem[start..end].split_whitespace().collect()
}

/// Ingress gateway without TLS termination: nginx's Secret and ConfigMap made with the
/// kubectl verbs, my-nginx deployed with its sidecar, the PASSTHROUGH Gateway and the SNI
/// route applied; `curl --resolve nginx.example.com:443:GATEWAY --cacert example.com.crt`
/// gets nginx's welcome page, and the certificate the client sees is nginx's own.
pub(crate) fn ingress_tls_passthrough(mesh: &LocalMesh) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = e2e::certs::TestCa::new();
    let root = ca.write_root(dir.path(), "example.com.crt");
    let nginx = ca.issue_files(dir.path(), "nginx.example.com", &["nginx.example.com"]);
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, NGINX_CONF).expect("nginx.conf");
    let path = |path: &std::path::Path| path.display().to_string();
    for args in [
        vec!["create", "secret", "tls", "nginx-server-certs", "--key", &path(&nginx.key), "--cert", &path(&nginx.cert)],
        vec!["create", "configmap", "nginx-configmap", &format!("--from-file=nginx.conf={}", path(&conf))],
    ] {
        let (code, out, err) = mesh.istioctl(&[&["x", "local"][..], &args].concat());
        assert_eq!(code, 0, "{}: {err}", args.join(" "));
        assert!(out.ends_with("created\n"), "{out}");
    }
    mesh.apply_yaml(MY_NGINX);
    mesh.wait_ready_labelled("run", "my-nginx", "default", 1);
    mesh.apply_yaml(PASSTHROUGH);

    let resolve = format!("nginx.example.com:443:{}", mesh.gateway_ip());
    let curl = || {
        let output = std::process::Command::new("curl")
            .args(["-s", "-v", "--max-time", "5", "--resolve", &resolve, "--cacert", &path(&root)])
            .arg("https://nginx.example.com")
            .output()
            .expect("run curl");
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    until("nginx's page through the gateway", Duration::from_secs(60), || {
        let (page, verbose) = curl();
        if page.contains("Welcome to nginx!") {
            Ok(())
        } else {
            Err(verbose.lines().filter(|line| line.starts_with('*')).collect::<Vec<_>>().join("\n"))
        }
    });
    let shown = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("{}:443", mesh.gateway_ip()), "-servername", "nginx.example.com"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let shown = String::from_utf8_lossy(&shown.stdout);
    let issued = std::fs::read_to_string(&nginx.cert).expect("nginx's certificate");
    assert_eq!(first_certificate(&shown), first_certificate(&issued), "the client sees nginx's own certificate");

    for (kind, name) in [("deployments", "my-nginx"), ("services", "my-nginx"), ("secrets", "nginx-server-certs")] {
        mesh.delete(kind, name);
    }
    mesh.delete("configmaps", "nginx-configmap");
}
