//! Istio config for tests, written by builders instead of by hand: a test states a service's
//! hosts, ports and endpoints, and gets the YAML document Pilot's `--configDir`, Galley and
//! `istioctl x local apply` read. Documents are joined into one file with `---\n`.

use std::fmt;

/// A `networking.istio.io/v1alpha3` ServiceEntry written as YAML, for test configs.
///
/// It starts as `resolution: STATIC` with no `location` (Istio's default, `MESH_EXTERNAL`);
/// `Display` writes the whole document, ending with a newline and without `---` separators:
///
/// ```
/// use e2e::fixtures::ServiceEntry;
///
/// let reviews = ServiceEntry::new("reviews", "default")
///     .host("reviews.default.svc.cluster.local")
///     .port(9080, "http", "HTTP")
///     .mesh_internal()
///     .endpoint_with("10.1.0.21", &[("version", "v1")], &[("http", 9081)]);
/// assert!(reviews.to_string().contains("  - {address: 10.1.0.21, ports: {http: 9081}, labels: {version: v1}}\n"));
/// ```
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    name: String,
    namespace: Option<String>,
    hosts: Vec<String>,
    addresses: Vec<String>,
    export_to: Vec<String>,
    ports: Vec<(u16, String, String)>,
    location: Option<&'static str>,
    resolution: String,
    endpoints: Vec<Endpoint>,
}

/// One `endpoints` entry: an address, its labels and per-port-name port overrides.
#[derive(Debug, Clone)]
struct Endpoint {
    address: String,
    labels: Vec<(String, String)>,
    ports: Vec<(String, u16)>,
}

impl ServiceEntry {
    /// A ServiceEntry `name` in `namespace`.
    pub fn new(name: &str, namespace: &str) -> Self {
        ServiceEntry { namespace: Some(namespace.to_string()), ..ServiceEntry::without_namespace(name) }
    }

    /// A ServiceEntry with no `metadata.namespace`: it lands in the namespace it is applied to.
    pub fn without_namespace(name: &str) -> Self {
        ServiceEntry {
            name: name.to_string(),
            namespace: None,
            hosts: Vec::new(),
            addresses: Vec::new(),
            export_to: Vec::new(),
            ports: Vec::new(),
            location: None,
            resolution: "STATIC".to_string(),
            endpoints: Vec::new(),
        }
    }

    /// A Bookinfo service in `default` as the Kubernetes registry shows it: host
    /// `NAME.default.svc.cluster.local`, port 9080 `http`, inside the mesh. Its endpoints come
    /// from `version_at`.
    pub fn bookinfo(name: &str) -> Self {
        ServiceEntry::new(name, "default")
            .host(&format!("{name}.default.svc.cluster.local"))
            .port(9080, "http", "HTTP")
            .mesh_internal()
    }

    /// Adds an endpoint labelled `app: NAME, version: VERSION`, serving `http` on `http_port`
    /// (or on 9080 when `None`).
    pub fn version_at(self, address: &str, version: &str, http_port: Option<u16>) -> Self {
        let app = self.name.clone();
        let ports: Vec<(&str, u16)> = http_port.map(|port| ("http", port)).into_iter().collect();
        self.endpoint_with(address, &[("app", app.as_str()), ("version", version)], &ports)
    }

    /// Adds a host to `hosts`.
    pub fn host(mut self, host: &str) -> Self {
        self.hosts.push(host.to_string());
        self
    }

    /// Adds a virtual IP to `addresses`.
    pub fn address(mut self, address: &str) -> Self {
        self.addresses.push(address.to_string());
        self
    }

    /// Adds a namespace (`.` for its own, `*` for all) to `exportTo`.
    pub fn export_to(mut self, namespace: &str) -> Self {
        self.export_to.push(namespace.to_string());
        self
    }

    /// Adds a port: its number, name and protocol (`HTTP`, `TCP`, `TLS`, …).
    pub fn port(mut self, number: u16, name: &str, protocol: &str) -> Self {
        self.ports.push((number, name.to_string(), protocol.to_string()));
        self
    }

    /// `location: MESH_INTERNAL`.
    pub fn mesh_internal(mut self) -> Self {
        self.location = Some("MESH_INTERNAL");
        self
    }

    /// `location: MESH_EXTERNAL`.
    pub fn mesh_external(mut self) -> Self {
        self.location = Some("MESH_EXTERNAL");
        self
    }

    /// The resolution (`STATIC` unless set): `DNS`, `NONE`.
    pub fn resolution(mut self, resolution: &str) -> Self {
        self.resolution = resolution.to_string();
        self
    }

    /// Adds an endpoint that serves every port on its own number, with no labels.
    pub fn endpoint(self, address: &str) -> Self {
        self.endpoint_with(address, &[], &[])
    }

    /// Adds an endpoint with labels and, by port name, the number it serves that port on.
    pub fn endpoint_with(mut self, address: &str, labels: &[(&str, &str)], ports: &[(&str, u16)]) -> Self {
        self.endpoints.push(Endpoint {
            address: address.to_string(),
            labels: labels.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
            ports: ports.iter().map(|(name, number)| (name.to_string(), *number)).collect(),
        });
        self
    }
}

impl fmt::Display for ServiceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry")?;
        match &self.namespace {
            Some(namespace) => {
                writeln!(f, "metadata: {{name: {}, namespace: {}}}", scalar(&self.name), scalar(namespace))?
            }
            None => writeln!(f, "metadata: {{name: {}}}", scalar(&self.name))?,
        }
        writeln!(f, "spec:")?;
        for (key, values) in [("hosts", &self.hosts), ("addresses", &self.addresses), ("exportTo", &self.export_to)] {
            if !values.is_empty() {
                writeln!(f, "  {key}: [{}]", flow(values.iter().map(|value| scalar(value))))?;
            }
        }
        if !self.ports.is_empty() {
            let ports = self.ports.iter().map(|(number, name, protocol)| {
                format!("{{number: {number}, name: {}, protocol: {}}}", scalar(name), scalar(protocol))
            });
            writeln!(f, "  ports: [{}]", flow(ports))?;
        }
        if let Some(location) = self.location {
            writeln!(f, "  location: {location}")?;
        }
        writeln!(f, "  resolution: {}", scalar(&self.resolution))?;
        if !self.endpoints.is_empty() {
            writeln!(f, "  endpoints:")?;
        }
        for endpoint in &self.endpoints {
            write!(f, "  - {{address: {}", scalar(&endpoint.address))?;
            if !endpoint.ports.is_empty() {
                let ports = endpoint.ports.iter().map(|(name, number)| format!("{}: {number}", scalar(name)));
                write!(f, ", ports: {{{}}}", flow(ports))?;
            }
            if !endpoint.labels.is_empty() {
                let labels = endpoint.labels.iter().map(|(key, value)| format!("{}: {}", scalar(key), scalar(value)));
                write!(f, ", labels: {{{}}}", flow(labels))?;
            }
            writeln!(f, "}}")?;
        }
        Ok(())
    }
}

/// Items joined as the inside of a YAML flow sequence or mapping.
fn flow(items: impl Iterator<Item = impl AsRef<str>>) -> String {
    items.map(|item| item.as_ref().to_string()).collect::<Vec<_>>().join(", ")
}

/// A string as a YAML flow scalar: plain when that is safe (names, hosts, addresses, `.`),
/// single-quoted otherwise (`*.example.com`, `*`).
fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with('-')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> serde_yaml::Value {
        serde_yaml::from_str(yaml).unwrap_or_else(|error| panic!("not YAML ({error}):\n{yaml}"))
    }

    #[test]
    fn writes_hosts_addresses_ports_and_endpoints_with_labels_and_ports() {
        let written = ServiceEntry::new("reviews", "default")
            .host("reviews.default.svc.cluster.local")
            .address("10.96.0.12")
            .port(9080, "http", "HTTP")
            .mesh_internal()
            .endpoint_with("127.0.0.1", &[("app", "reviews"), ("version", "v1")], &[("http", 9081)])
            .endpoint_with("127.0.0.1", &[("app", "reviews"), ("version", "v2")], &[("http", 9082)])
            .to_string();
        let by_hand = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.12]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: 9081}, labels: {app: reviews, version: v1}}
  - {address: 127.0.0.1, ports: {http: 9082}, labels: {app: reviews, version: v2}}
";
        assert_eq!(written, by_hand);
        assert_eq!(parse(&written), parse(by_hand));
    }

    #[test]
    fn bookinfo_services_are_the_long_form_in_short() {
        let short = ServiceEntry::bookinfo("reviews")
            .address("10.96.0.12")
            .version_at("127.0.0.1", "v1", Some(9081))
            .version_at("10.1.0.22", "v2", None);
        let long = ServiceEntry::new("reviews", "default")
            .host("reviews.default.svc.cluster.local")
            .address("10.96.0.12")
            .port(9080, "http", "HTTP")
            .mesh_internal()
            .endpoint_with("127.0.0.1", &[("app", "reviews"), ("version", "v1")], &[("http", 9081)])
            .endpoint_with("10.1.0.22", &[("app", "reviews"), ("version", "v2")], &[]);
        assert_eq!(short.to_string(), long.to_string());
    }

    #[test]
    fn writes_several_hosts_external_location_export_to_and_bare_endpoints() {
        let written = ServiceEntry::new("external-apis", "default")
            .host("api.example.com")
            .host("www.example.org")
            .export_to(".")
            .port(443, "tls", "TLS")
            .mesh_external()
            .endpoint("127.0.0.1")
            .to_string();
        let by_hand = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: external-apis, namespace: default}
spec:
  hosts: [api.example.com, www.example.org]
  exportTo: [.]
  ports: [{number: 443, name: tls, protocol: TLS}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
";
        assert_eq!(parse(&written), parse(by_hand));
        assert_eq!(parse(&written)["spec"]["exportTo"][0], ".");
    }

    #[test]
    fn writes_no_namespace_location_or_endpoints_unless_given() {
        let written = ServiceEntry::without_namespace("cnn")
            .host("edition.cnn.com")
            .port(80, "http-port", "HTTP")
            .port(443, "https", "HTTPS")
            .resolution("DNS")
            .to_string();
        let by_hand = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
";
        assert_eq!(parse(&written), parse(by_hand));
        assert!(written.ends_with('\n') && !written.contains("---"), "{written}");
    }

    #[test]
    fn quotes_what_a_plain_scalar_cannot_hold() {
        let written = ServiceEntry::new("wildcard", "default").host("*.example.com").export_to("*").to_string();
        let parsed = parse(&written);
        assert_eq!(parsed["spec"]["hosts"][0], "*.example.com");
        assert_eq!(parsed["spec"]["exportTo"][0], "*");
    }
}
