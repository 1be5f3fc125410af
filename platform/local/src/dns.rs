//! Cluster DNS, kube-dns's part: a UDP server on the host's bridge address that answers the
//! names of Services (`svc.ns.svc.cluster.local` → ClusterIP) and of the control plane, says
//! NXDOMAIN for other `cluster.local` names, and forwards everything else to the host's own
//! resolvers — except the names of the installation's hosts file (`config/hosts`, in
//! `/etc/hosts` format, re-read when it changes), which it answers itself as CoreDNS's `hosts`
//! plugin would: a way to give a machine without outside DNS the external names the egress
//! tasks use. An `ExternalName` Service's name is a CNAME to its external name, with the
//! external name's addresses when they are known here or upstream. Pods get it as their
//! nameserver with Kubernetes' search path, so resolvers that do not read `/etc/hosts` first
//! (Envoy's c-ares) find the control plane at once.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// The cluster's domain.
pub(crate) const CLUSTER_DOMAIN: &str = "cluster.local";
/// How long answers may be cached: short, as names follow Services.
const TTL: u32 = 5;

/// Names and their addresses, kept current by the controller.
#[derive(Clone, Default)]
pub(crate) struct Records {
    names: Arc<RwLock<HashMap<String, Ipv4Addr>>>,
    /// Names outside the cluster answered here instead of upstream (the hosts file).
    external: Arc<RwLock<HashMap<String, Ipv4Addr>>>,
    /// `ExternalName` Services: the Service's name → the external name.
    aliases: Arc<RwLock<HashMap<String, String>>>,
}

impl Records {
    /// Replaces every record: `name.namespace` (without the domain) → address.
    pub(crate) fn set(&self, services: impl IntoIterator<Item = (String, String, Ipv4Addr)>) {
        let names = services
            .into_iter()
            .map(|(name, namespace, address)| (format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}"), address))
            .collect();
        *istio_runtime::sync::write(&self.names) = names;
    }

    /// Replaces the `ExternalName` Services: `name.namespace` → the external name.
    pub(crate) fn set_aliases(&self, aliases: impl IntoIterator<Item = (String, String, String)>) {
        let aliases = aliases
            .into_iter()
            .map(|(name, namespace, target)| {
                (format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}"), target.trim_end_matches('.').to_lowercase())
            })
            .collect();
        *istio_runtime::sync::write(&self.aliases) = aliases;
    }

    fn alias(&self, fqdn: &str) -> Option<String> {
        istio_runtime::sync::read(&self.aliases).get(fqdn).cloned()
    }

    /// Replaces the external names (lower-case, without a trailing dot) → address.
    pub(crate) fn set_external(&self, names: HashMap<String, Ipv4Addr>) {
        *istio_runtime::sync::write(&self.external) = names;
    }

    fn lookup(&self, fqdn: &str) -> Option<Ipv4Addr> {
        let cluster = istio_runtime::sync::read(&self.names).get(fqdn).copied();
        cluster.or_else(|| istio_runtime::sync::read(&self.external).get(fqdn).copied())
    }
}

/// The IPv4 entries of a hosts file: every name on a line maps to its address. Comments,
/// blank lines and IPv6 entries are skipped; the first entry for a name wins, as in
/// `/etc/hosts`.
pub(crate) fn parse_hosts(text: &str) -> HashMap<String, Ipv4Addr> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(address) = fields.next().and_then(|field| field.parse::<Ipv4Addr>().ok()) else { continue };
        for name in fields {
            names.entry(name.trim_end_matches('.').to_lowercase()).or_insert(address);
        }
    }
    names
}

/// A pod's `/etc/resolv.conf`: this server, with Kubernetes' search path for `namespace`.
pub(crate) fn resolv_conf(namespace: &str, server: Ipv4Addr) -> String {
    format!(
        "nameserver {server}\nsearch {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
}

/// The host's resolvers, for names outside the cluster.
fn upstream_servers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|server| server.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Serves on `address` until `shutdown` resolves.
pub(crate) async fn serve(
    address: SocketAddr,
    records: Records,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let socket = Arc::new(UdpSocket::bind(address).await?);
    let upstream = upstream_servers();
    tokio::pin!(shutdown);
    let mut buffer = vec![0_u8; 4096];
    loop {
        let (length, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => received?,
            () = &mut shutdown => return Ok(()),
        };
        let query = buffer[..length].to_vec();
        let socket = socket.clone();
        let records = records.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Some(answer) = answer(&query, &records, &upstream).await {
                let _ = socket.send_to(&answer, peer).await;
            }
        });
    }
}

/// The response to one query, or `None` for something that is not a DNS query.
async fn answer(query: &[u8], records: &Records, upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries().first()?.clone();
    let fqdn = question.name().to_ascii().trim_end_matches('.').to_lowercase();
    let in_cluster = fqdn == CLUSTER_DOMAIN || fqdn.ends_with(&format!(".{CLUSTER_DOMAIN}"));
    if !in_cluster && records.lookup(&fqdn).is_none() {
        if let Some(forwarded) = forward(query, upstream).await {
            return Some(forwarded);
        }
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    if let Some(target) = records.alias(&fqdn) {
        response.set_authoritative(true);
        let Ok(target_name) = Name::from_ascii(format!("{target}.")) else {
            response.set_response_code(ResponseCode::ServFail);
            return response.to_vec().ok();
        };
        response.add_answer(Record::from_rdata(question.name().clone(), TTL, RData::CNAME(CNAME(target_name.clone()))));
        if question.query_type() == RecordType::A {
            response.add_answers(target_addresses(&target, &target_name, records, upstream).await);
        }
        return response.to_vec().ok();
    }
    match records.lookup(&fqdn) {
        Some(address) => {
            response.set_authoritative(true);
            if question.query_type() == RecordType::A {
                response.add_answer(Record::from_rdata(question.name().clone(), TTL, RData::A(A(address))));
            }
        }
        None if in_cluster => {
            response.set_authoritative(true).set_response_code(ResponseCode::NXDomain);
        }
        None => {
            response.set_response_code(ResponseCode::ServFail);
        }
    }
    response.to_vec().ok()
}

/// The A records of an `ExternalName` Service's target: from the records here (the hosts file,
/// or another Service), else from the host's resolvers.
async fn target_addresses(target: &str, name: &Name, records: &Records, upstream: &[SocketAddr]) -> Vec<Record> {
    if let Some(address) = records.lookup(target) {
        return vec![Record::from_rdata(name.clone(), TTL, RData::A(A(address)))];
    }
    let mut query = Message::new();
    query.set_id(1).set_recursion_desired(true).add_query(hickory_proto::op::Query::query(name.clone(), RecordType::A));
    let Ok(bytes) = query.to_vec() else { return Vec::new() };
    match forward(&bytes, upstream).await.and_then(|reply| Message::from_vec(&reply).ok()) {
        Some(reply) => reply.answers().to_vec(),
        None => Vec::new(),
    }
}

/// Asks the host's resolvers; `None` when none answers in time.
async fn forward(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
        let Ok(socket) = UdpSocket::bind(bind).await else { continue };
        if socket.send_to(query, server).await.is_err() {
            continue;
        }
        let mut buffer = vec![0_u8; 4096];
        if let Ok(Ok((length, _))) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer)).await {
            buffer.truncate(length);
            return Some(buffer);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(7)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_str(name).expect("name"), kind));
        message.to_vec().expect("encode")
    }

    #[tokio::test]
    async fn services_resolve_and_other_cluster_names_do_not() {
        let records = Records::default();
        records.set([("istio-pilot".to_string(), "istio-system".to_string(), Ipv4Addr::new(10, 44, 0, 10))]);
        let reply = answer(&query("istio-pilot.istio-system.svc.cluster.local.", RecordType::A), &records, &[])
            .await
            .expect("answer");
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.id(), 7);
        assert_eq!(reply.answers().len(), 1);
        assert_eq!(reply.answers()[0].data(), &RData::A(A(Ipv4Addr::new(10, 44, 0, 10))));
        let aaaa = answer(&query("istio-pilot.istio-system.svc.cluster.local.", RecordType::AAAA), &records, &[])
            .await
            .expect("answer");
        let aaaa = Message::from_vec(&aaaa).expect("decode");
        assert_eq!((aaaa.response_code(), aaaa.answers().len()), (ResponseCode::NoError, 0));
        let missing =
            answer(&query("nothing.default.svc.cluster.local.", RecordType::A), &records, &[]).await.expect("answer");
        assert_eq!(Message::from_vec(&missing).expect("decode").response_code(), ResponseCode::NXDomain);
        assert_eq!(
            resolv_conf("default", Ipv4Addr::new(10, 44, 0, 1)).lines().nth(1),
            Some("search default.svc.cluster.local svc.cluster.local cluster.local")
        );
    }

    #[tokio::test]
    async fn hosts_file_names_are_answered_here() {
        let records = Records::default();
        records.set_external(parse_hosts(
            "# outside\n10.45.0.2 httpbin.org Edition.CNN.com.  # two names\n::1 ip6-only\n10.45.0.9 httpbin.org\n",
        ));
        let reply = answer(&query("edition.cnn.com.", RecordType::A), &records, &[]).await.expect("answer");
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.answers()[0].data(), &RData::A(A(Ipv4Addr::new(10, 45, 0, 2))));
        let first = answer(&query("httpbin.org.", RecordType::A), &records, &[]).await.expect("answer");
        let first = Message::from_vec(&first).expect("decode");
        assert_eq!(first.answers()[0].data(), &RData::A(A(Ipv4Addr::new(10, 45, 0, 2))), "the first entry wins");
        let other = answer(&query("ip6-only.", RecordType::A), &records, &[]).await.expect("answer");
        assert_eq!(Message::from_vec(&other).expect("decode").response_code(), ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn external_name_services_are_cnames_to_their_target() {
        let records = Records::default();
        records.set_external(parse_hosts("10.45.0.2 httpbin.org\n"));
        records.set_aliases([("my-httpbin".to_string(), "default".to_string(), "HTTPBin.org.".to_string())]);
        let reply = answer(&query("my-httpbin.default.svc.cluster.local.", RecordType::A), &records, &[])
            .await
            .expect("answer");
        let reply = Message::from_vec(&reply).expect("message");
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        let answers: Vec<String> = reply.answers().iter().map(|record| record.data().to_string()).collect();
        assert_eq!(answers, ["httpbin.org.", "10.45.0.2"]);
        // An unknown target (no resolvers here): the CNAME alone.
        records.set_aliases([("gone".to_string(), "default".to_string(), "nowhere.invalid".to_string())]);
        let reply =
            answer(&query("gone.default.svc.cluster.local.", RecordType::A), &records, &[]).await.expect("answer");
        assert_eq!(Message::from_vec(&reply).expect("message").answers().len(), 1);
    }
}
