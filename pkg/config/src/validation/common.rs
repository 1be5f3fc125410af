//! Field rules shared by many kinds, as Istio 1.4 defines them: DNS names and wildcards, host
//! matching, label keys and values, ports and port names, protocols, percentages, durations,
//! IPs and subnets, HTTP header names and methods, and `exportTo`.

use super::invalid::Invalid;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$").unwrap_or_else(|e| panic!("{e}")));
static WILDCARD_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\*(?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$").unwrap_or_else(|e| panic!("{e}")));
static LOWER_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
        .unwrap_or_else(|e| panic!("{e}"))
});
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap_or_else(|e| panic!("{e}")));
static LABEL_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$").unwrap_or_else(|e| panic!("{e}")));
static HEADER_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^:?[!#$%&'*+.^_`|~0-9A-Za-z-]+$").unwrap_or_else(|e| panic!("{e}")));

/// A DNS-1123 label as Istio checks it (letters of either case, digits, inner dashes, ≤ 63).
pub fn is_dns1123_label(value: &str) -> bool {
    value.len() <= 63 && DNS1123_LABEL.is_match(value)
}

/// A Kubernetes object name: a lowercase DNS-1123 subdomain of at most 253 characters.
pub(crate) fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= 253 && LOWER_SUBDOMAIN.is_match(value)
}

fn is_wildcard_label(value: &str) -> bool {
    value.len() <= 63 && (is_dns1123_label(value) || WILDCARD_LABEL.is_match(value))
}

fn dns_preconditions(name: &str) -> Result<(), Invalid> {
    if name.len() > 255 {
        return Err(Invalid::DomainTooLong(name.to_string()));
    }
    if name.is_empty() {
        return Err(Invalid::EmptyDomain);
    }
    Ok(())
}

fn dns_labels(whole: &str, domain: &str) -> Result<(), Invalid> {
    let parts: Vec<&str> = domain.split('.').collect();
    let top_level = parts.last().copied().unwrap_or_default();
    if !top_level.is_empty() && top_level.chars().all(|c| c.is_ascii_digit()) {
        return Err(Invalid::NumericTopLevelDomain { domain: whole.to_string(), top_level: top_level.to_string() });
    }
    for (index, label) in parts.iter().enumerate() {
        if index == parts.len() - 1 && label.is_empty() && index > 0 {
            return Ok(()); // a trailing dot is allowed
        }
        if !is_dns1123_label(label) {
            return Err(Invalid::DomainLabel { domain: whole.to_string(), label: label.to_string() });
        }
    }
    Ok(())
}

/// A fully qualified (non-wildcard) DNS name.
pub(crate) fn validate_fqdn(name: &str) -> Result<(), Invalid> {
    dns_preconditions(name)?;
    dns_labels(name, name)
}

/// A DNS name that may have a wildcard in its first label (`*`, `*.example.com`, `*foo.com`).
pub(crate) fn validate_wildcard_domain(name: &str) -> Result<(), Invalid> {
    dns_preconditions(name)?;
    let (first, rest) = match name.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    if !is_wildcard_label(first) {
        return Err(Invalid::DomainLabel { domain: name.to_string(), label: first.to_string() });
    }
    match rest {
        Some(rest) => dns_labels(name, rest),
        None => Ok(()),
    }
}

/// Whether two host names (either may start with `*`) can name the same host.
pub fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(a_suffix), Some(b_suffix)) => {
            if a_suffix.len() < b_suffix.len() {
                b_suffix.ends_with(a_suffix)
            } else {
                a_suffix.ends_with(b_suffix)
            }
        }
        (Some(a_suffix), None) => b.ends_with(a_suffix),
        (None, Some(b_suffix)) => a.ends_with(b_suffix),
        (None, None) => a == b,
    }
}

/// Whether every host `inner` names is also named by `outer`.
pub(crate) fn host_subset_of(inner: &str, outer: &str) -> bool {
    match (inner.strip_prefix('*'), outer.strip_prefix('*')) {
        (Some(inner_suffix), Some(outer_suffix)) => inner_suffix.ends_with(outer_suffix),
        (Some(_), None) => false,
        (None, Some(outer_suffix)) => inner.ends_with(outer_suffix),
        (None, None) => inner == outer,
    }
}

/// Kubernetes label keys and values (`[prefix/]name`).
pub(crate) fn validate_labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<(), Invalid> {
    for (key, value) in labels {
        validate_label_key(key)?;
        if value.len() > 63 || !LABEL_VALUE.is_match(value) {
            return Err(Invalid::LabelValue(value.clone()));
        }
    }
    Ok(())
}

fn validate_label_key(key: &str) -> Result<(), Invalid> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|prefix| prefix.len() <= 253 && validate_fqdn(prefix).is_ok());
    if !prefix_ok || name.is_empty() || name.len() > 63 || !LABEL_NAME.is_match(name) {
        return Err(Invalid::LabelKey(key.to_string()));
    }
    Ok(())
}

pub(crate) fn validate_port(port: i64) -> Result<(), Invalid> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(Invalid::Port(port))
    }
}

pub(crate) fn validate_port_name(name: &str) -> Result<(), Invalid> {
    if is_dns1123_label(name) {
        Ok(())
    } else {
        Err(Invalid::PortName(name.to_string()))
    }
}

/// The protocols Istio 1.4 recognises on ports (case-insensitive).
pub(crate) fn protocol_is_known(protocol: &str) -> bool {
    const KNOWN: &[&str] =
        &["GRPC", "GRPC-WEB", "HTTP", "HTTP2", "HTTPS", "TCP", "TLS", "MONGO", "REDIS", "MYSQL", "UDP", "THRIFT"];
    KNOWN.iter().any(|known| known.eq_ignore_ascii_case(protocol))
}

pub(crate) fn protocol_is_tls(protocol: &str) -> bool {
    ["HTTPS", "TLS"].iter().any(|p| p.eq_ignore_ascii_case(protocol))
}

pub(crate) fn protocol_is_http(protocol: &str) -> bool {
    ["HTTP", "HTTP2", "GRPC", "GRPC-WEB"].iter().any(|p| p.eq_ignore_ascii_case(protocol))
}

pub(crate) fn validate_protocol(protocol: &str) -> Result<(), Invalid> {
    if protocol_is_known(protocol) {
        Ok(())
    } else {
        Err(Invalid::Protocol(protocol.to_string()))
    }
}

pub(crate) fn validate_percent(value: i64) -> Result<(), Invalid> {
    if (0..=100).contains(&value) {
        Ok(())
    } else {
        Err(Invalid::Percent(value))
    }
}

pub(crate) fn validate_percentage(value: f64) -> Result<(), Invalid> {
    if !(0.0..=100.0).contains(&value) || (value > 0.0 && value < 0.0001) {
        Err(Invalid::Percentage(value))
    } else {
        Ok(())
    }
}

/// A duration of at least 1ms with millisecond precision.
pub(crate) fn validate_duration(duration: &prost_types::Duration) -> Result<(), Invalid> {
    let nanos = i128::from(duration.seconds) * 1_000_000_000 + i128::from(duration.nanos);
    if nanos < 1_000_000 {
        return Err(Invalid::DurationTooShort);
    }
    if nanos % 1_000_000 != 0 {
        return Err(Invalid::DurationPrecision);
    }
    Ok(())
}

/// A duration within `[min_ms, max_ms]` milliseconds.
pub(crate) fn validate_duration_range(
    duration: &prost_types::Duration,
    min_ms: i64,
    max_ms: i64,
) -> Result<(), Invalid> {
    let millis = duration.seconds.saturating_mul(1000).saturating_add(i64::from(duration.nanos / 1_000_000));
    if millis < min_ms || millis > max_ms {
        return Err(Invalid::DurationRange {
            duration: format_duration(duration),
            min: format_ms(min_ms),
            max: format_ms(max_ms),
        });
    }
    Ok(())
}

fn format_ms(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `host:port`, where host is a DNS name or an IP (`[v6]` in brackets).
pub(crate) fn validate_host_port(address: &str) -> Result<(), Invalid> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(Invalid::NotHostPort(address.to_string()));
    };
    let port = port.parse::<i64>().map_err(|_| Invalid::AddressPort(address.to_string()))?;
    validate_port(port)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if validate_ip(host).is_ok() || validate_fqdn(host).is_ok() {
        Ok(())
    } else {
        Err(Invalid::AddressHost { address: address.to_string(), host: host.to_string() })
    }
}

pub(crate) fn format_duration(duration: &prost_types::Duration) -> String {
    if duration.nanos == 0 {
        format!("{}s", duration.seconds)
    } else {
        let total = duration.seconds as f64 + f64::from(duration.nanos) / 1e9;
        format!("{total}s")
    }
}

pub(crate) fn validate_ip(address: &str) -> Result<(), Invalid> {
    address.parse::<IpAddr>().map(|_| ()).map_err(|_| Invalid::Ip(address.to_string()))
}

/// An IP or a CIDR block.
pub(crate) fn validate_ip_subnet(subnet: &str) -> Result<(), Invalid> {
    if subnet.contains('/') {
        subnet.parse::<ipnet::IpNet>().map(|_| ()).map_err(|_| Invalid::Cidr(subnet.to_string()))
    } else {
        validate_ip(subnet)
    }
}

/// A Unix domain socket path: absolute, or `@abstract`.
pub(crate) fn validate_unix_address(path: &str) -> Result<(), Invalid> {
    if path.is_empty() {
        return Err(Invalid::EmptyUnixAddress);
    }
    if path.contains('\0') {
        return Err(Invalid::UnixAddressNul(path.to_string()));
    }
    if !path.starts_with('/') && !path.starts_with('@') {
        return Err(Invalid::UnixAddressRelative(path.to_string()));
    }
    Ok(())
}

pub(crate) fn validate_header_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::EmptyHeaderName);
    }
    if HEADER_NAME.is_match(name) {
        Ok(())
    } else {
        Err(Invalid::HeaderName(name.to_string()))
    }
}

pub(crate) fn validate_http_method(method: &str) -> Result<(), Invalid> {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    if METHODS.contains(&method) {
        Ok(())
    } else {
        Err(Invalid::HttpMethod(method.to_string()))
    }
}

/// Istio 1.4 allows at most one `exportTo` entry, `.` or `*`.
pub(crate) fn validate_export_to(export_to: &[String]) -> Result<(), Invalid> {
    match export_to {
        [] => Ok(()),
        [only] if only == "." || only == "*" => Ok(()),
        [only] => Err(Invalid::ExportTo(only.clone())),
        _ => Err(Invalid::ExportToMany),
    }
}

/// A regular expression Envoy will accept (RE2 syntax, which the `regex` crate shares).
pub(crate) fn validate_regex(pattern: &str) -> Result<(), Invalid> {
    Regex::new(pattern).map_err(|source| Invalid::Regex { pattern: pattern.to_string(), source })?;
    match nested_repetition(pattern) {
        Some(operator) => Err(Invalid::RegexNestedRepetition { pattern: pattern.to_string(), operator }),
        None => Ok(()),
    }
}

/// A repetition of a repetition (`a++`, `a**`, `a{2}*`): RE2, which Istio and Envoy use,
/// refuses it; Rust's regex takes it. The operators, as RE2 names them.
fn nested_repetition(pattern: &str) -> Option<String> {
    use regex_syntax::ast::Ast;
    fn find(ast: &Ast, pattern: &str) -> Option<String> {
        match ast {
            Ast::Repetition(outer) => match outer.ast.as_ref() {
                Ast::Repetition(inner) => {
                    let start = inner.op.span.start.offset;
                    Some(pattern[start..outer.op.span.end.offset].to_string())
                }
                other => find(other, pattern),
            },
            Ast::Group(group) => find(&group.ast, pattern),
            Ast::Alternation(alternation) => alternation.asts.iter().find_map(|ast| find(ast, pattern)),
            Ast::Concat(concat) => concat.asts.iter().find_map(|ast| find(ast, pattern)),
            _ => None,
        }
    }
    let ast = regex_syntax::ast::parse::Parser::new().parse(pattern).ok()?;
    find(&ast, pattern)
}
