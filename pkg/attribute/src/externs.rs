//! The functions CEXL calls by name (`ip`, `timestamp`, `dnsName`, `email`, `uri`, `match`,
//! `startsWith`, `endsWith`, `toLower`, `emptyStringMap`, `conditionalString`) and the equality
//! of DNS names, e-mail addresses and URIs, with 1.4's semantics and error messages.
//!
//! DNS names go through IDNA (the `idna` crate) as 1.4's lookup profile did; e-mail addresses and
//! URIs are parsed only as far as validating and comparing them needs.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::value::{empty_string_map, ip_to_16_bytes, Timestamp, Value};

/// A function implemented here (the operators and `matches` are the evaluator's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Ip,
    Timestamp,
    DnsName,
    Email,
    Uri,
    Match,
    StartsWith,
    EndsWith,
    ToLower,
    EmptyStringMap,
    ConditionalString,
}

impl Function {
    pub(crate) fn by_name(name: &str) -> Option<Function> {
        Some(match name {
            "ip" => Function::Ip,
            "timestamp" => Function::Timestamp,
            "dnsName" => Function::DnsName,
            "email" => Function::Email,
            "uri" => Function::Uri,
            "match" => Function::Match,
            "startsWith" => Function::StartsWith,
            "endsWith" => Function::EndsWith,
            "toLower" => Function::ToLower,
            "emptyStringMap" => Function::EmptyStringMap,
            "conditionalString" => Function::ConditionalString,
            _ => return None,
        })
    }
}

const RFC3339_LAYOUT: &str = "2006-01-02T15:04:05Z07:00";

/// Calls `function` on its evaluated arguments (receiver first for methods).
pub(crate) fn call<'a>(function: Function, args: [Option<Value<'a>>; 3]) -> Result<Value<'a>, String> {
    let [first, second, third] = args;
    let text = |value: &Option<Value<'a>>| value.as_ref().and_then(Value::as_str).unwrap_or_default().to_string();
    let borrowed = |value: Option<Value<'a>>| -> Cow<'a, str> {
        match value {
            Some(Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text)) => text,
            Some(other) => Cow::Owned(other.to_string()),
            None => Cow::Borrowed(""),
        }
    };
    Ok(match function {
        Function::Ip => {
            let input = text(&first);
            let address: IpAddr = input.parse().map_err(|_| format!("could not convert {input} to IP_ADDRESS"))?;
            Value::IpAddress(Cow::Owned(ip_to_16_bytes(address).to_vec()))
        }
        Function::Timestamp => {
            let input = text(&first);
            let at = Timestamp::parse_rfc3339(&input).ok_or_else(|| {
                format!("could not convert '{input}' to TIMESTAMP. expected format: '{RFC3339_LAYOUT}'")
            })?;
            Value::Timestamp(at)
        }
        Function::DnsName => {
            let input = borrowed(first);
            validate_dns_name(&input).map_err(|error| format!("error converting '{input}' to dns name: '{error}'"))?;
            Value::DnsName(input)
        }
        Function::Email => {
            let input = borrowed(first);
            parse_email(&input).map_err(|error| format!("error converting '{input}' to e-mail: {error}"))?;
            Value::EmailAddress(input)
        }
        Function::Uri => {
            let input = borrowed(first);
            parse_uri(&input)?;
            Value::Uri(input)
        }
        Function::Match => Value::Bool(wildcard_match(&borrowed(first), &borrowed(second))),
        Function::StartsWith => Value::Bool(borrowed(first).starts_with(&*borrowed(second))),
        Function::EndsWith => Value::Bool(borrowed(first).ends_with(&*borrowed(second))),
        Function::ToLower => {
            let input = borrowed(first);
            if input.chars().any(char::is_uppercase) {
                Value::String(Cow::Owned(input.to_lowercase()))
            } else {
                Value::String(input)
            }
        }
        Function::EmptyStringMap => Value::StringMap(Cow::Borrowed(empty_string_map())),
        Function::ConditionalString => {
            let chosen = matches!(first, Some(Value::Bool(true)));
            Value::String(if chosen { borrowed(second) } else { borrowed(third) })
        }
    })
}

/// `match(str, pattern)`: a trailing `*` is a prefix test, a leading one a suffix test, anything
/// else an exact comparison.
pub fn wildcard_match(text: &str, pattern: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        text.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        text.ends_with(suffix)
    } else {
        text == pattern
    }
}

/// Checks a DNS name as IDNA's lookup profile with strict rules did; the error reads as Go's.
fn validate_dns_name(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || trimmed.len() > 253 {
        return Err(format!("idna: invalid label {name:?}"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') || label.len() > 63 {
            return Err(format!("idna: invalid label {label:?}"));
        }
        if let Some(bad) = label.chars().find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!("idna: disallowed rune U+{:04X}", u32::from(bad)));
        }
    }
    if !name.is_ascii() {
        idna::domain_to_ascii_strict(trimmed).map_err(|_| format!("idna: invalid label {name:?}"))?;
    }
    Ok(())
}

/// A DNS name in the form equality compares: IDNA-mapped (lower-cased), without the root dot.
fn normalized_dns_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    idna::domain_to_ascii(trimmed)
        .map_err(|_| format!("error converting '{name}' to dns name: 'idna: invalid label {name:?}'"))
}

pub(crate) fn dns_names_equal(left: &str, right: &str) -> Result<bool, String> {
    Ok(normalized_dns_name(left)? == normalized_dns_name(right)?)
}

/// An e-mail address split into its local part (unquoted) and domain.
struct Email {
    local: String,
    domain: String,
}

/// Parses one RFC 5322 address without a display name; errors read as Go's `net/mail`.
fn parse_email(text: &str) -> Result<Email, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("'mail: no address'".to_string());
    }
    let spec = match (text.find('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => {
            if !text[..open].trim().is_empty() {
                return Err("display names are not allowed".to_string());
            }
            &inner[open + 1..]
        }
        _ => text,
    };
    let (local, rest) = if let Some(quoted) = spec.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(offset + 1);
                    break;
                }
                '\\' => local.extend(chars.next().map(|(_, escaped)| escaped)),
                c => local.push(c),
            }
        }
        let end = end.ok_or_else(|| "'mail: unclosed quoted-string'".to_string())?;
        (local, &quoted[end..])
    } else {
        let end = spec.find('@').unwrap_or(spec.len());
        let local = &spec[..end];
        if !is_dot_atom(local) {
            return Err(if end == spec.len() {
                "'mail: missing @ in addr-spec'".to_string()
            } else {
                "'mail: invalid string'".to_string()
            });
        }
        (local.to_string(), &spec[end..])
    };
    let Some(domain) = rest.strip_prefix('@') else { return Err("'mail: missing @ in addr-spec'".to_string()) };
    if !is_dot_atom(domain) {
        return Err("'mail: invalid domain'".to_string());
    }
    validate_dns_name(domain).map_err(|error| format!("'{error}'"))?;
    Ok(Email { local, domain: domain.to_string() })
}

fn is_dot_atom(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii())
        })
}

pub(crate) fn emails_equal(left: &str, right: &str) -> Result<bool, String> {
    let parse = |text: &str| parse_email(text).map_err(|error| format!("error converting '{text}' to e-mail: {error}"));
    let (left, right) = (parse(left)?, parse(right)?);
    Ok(left.local == right.local && dns_names_equal(&left.domain, &right.domain)?)
}

/// A URL split as far as comparing needs: scheme, authority (host and port), and the rest.
struct Uri<'t> {
    scheme: &'t str,
    host: &'t str,
    port: &'t str,
    rest: &'t str,
}

/// Parses a URL, relative ones included, with Go's `net/url` errors.
fn parse_uri(text: &str) -> Result<Uri<'_>, String> {
    if text.is_empty() {
        return Err("error converting string to uri: empty string".to_string());
    }
    let fail = |reason: &str| format!("error converting string to uri '{text}': 'parse {text}: {reason}'");
    if let Some(bad) = text.chars().find(|c| c.is_ascii_control()) {
        return Err(fail(&format!("net/url: invalid control character in URL {:?}", bad)));
    }
    let mut scheme = "";
    let mut rest = text;
    for (offset, c) in text.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if offset > 0 => {}
            ':' if offset == 0 => return Err(fail("missing protocol scheme")),
            ':' => {
                scheme = &text[..offset];
                rest = &text[offset + 1..];
                break;
            }
            _ => break,
        }
    }
    let bytes = text.as_bytes();
    for (offset, byte) in bytes.iter().enumerate() {
        if *byte == b'%' {
            let escape = bytes.get(offset + 1..offset + 3);
            if !escape.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                let shown = String::from_utf8_lossy(&bytes[offset..(offset + 3).min(bytes.len())]).into_owned();
                return Err(fail(&format!("invalid URL escape {shown:?}")));
            }
        }
    }
    let (mut host, mut port) = ("", "");
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..end];
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        (host, port) = match authority.rfind(':') {
            Some(colon) if !authority[colon..].contains(']') => (&authority[..colon], &authority[colon + 1..]),
            _ => (authority, ""),
        };
        if port.chars().any(|c| !c.is_ascii_digit()) {
            return Err(fail(&format!("invalid port {:?} after host", format!(":{port}"))));
        }
        rest = &after[end..];
    }
    Ok(Uri { scheme, host, port, rest })
}

pub(crate) fn uris_equal(left: &str, right: &str) -> Result<bool, String> {
    let (a, b) = (parse_uri(left)?, parse_uri(right)?);
    if !a.scheme.eq_ignore_ascii_case(b.scheme) {
        return Ok(false);
    }
    let scheme = a.scheme.to_ascii_lowercase();
    if scheme == "http" || scheme == "https" {
        let host = |host: &str| host.trim_start_matches('[').trim_end_matches(']').to_string();
        return Ok(dns_names_equal(&host(a.host), &host(b.host)).unwrap_or(a.host == b.host)
            && a.port == b.port
            && a.rest == b.rest);
    }
    Ok(left[a.scheme.len()..] == right[b.scheme.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_at_one_end_only() {
        assert!(wildcard_match("svc1.ns1.cluster", "*.ns1.cluster"));
        assert!(wildcard_match("session=abc", "session=*"));
        assert!(wildcard_match("anything", "*"));
        assert!(wildcard_match("*ab", "*a*"));
        assert!(!wildcard_match("xab", "*a*"));
    }

    #[test]
    fn dns_names_compare_without_case_and_root_dot() {
        assert_eq!(dns_names_equal("foo.bar.baz", "foo.Bar.baz."), Ok(true));
        assert_eq!(dns_names_equal("foo.bar.com", "bar.foo.com"), Ok(false));
        assert_eq!(validate_dns_name("-foo.-bar"), Err("idna: invalid label \"-foo\"".to_string()));
        assert_eq!(validate_dns_name(""), Err("idna: invalid label \"\"".to_string()));
        assert!(validate_dns_name("bücher.example").is_ok());
    }

    #[test]
    fn emails_compare_local_parts_exactly() {
        assert_eq!(emails_equal("\"istio\"@istio.io", "istio@istio.io"), Ok(true));
        assert_eq!(emails_equal("Istio@istio.io", "istio@ISTIO.io"), Ok(false));
        assert_eq!(emails_equal("istio@ISTIO.io", "istio@istio.io"), Ok(true));
        assert!(parse_email("Joe <joe@x.io>").is_err_and(|e| e.contains("display names")));
        assert!(parse_email("<joe@x.io>").is_ok());
        assert!(parse_email("barfoo").is_err());
    }

    #[test]
    fn uris_compare_hosts_by_name_and_ports_as_written() {
        assert_eq!(uris_equal("http://foo.bar.baz", "http://foo.Bar.baz."), Ok(true));
        assert_eq!(uris_equal("HTTP://istio.io/a", "http://istio.io/a"), Ok(true));
        assert_eq!(uris_equal("http://istio.io:80", "http://istio.io:81"), Ok(false));
        assert_eq!(uris_equal("http://istio.io:80", "http://istio.io"), Ok(false));
        assert_eq!(uris_equal("foo.bar.com", "https://foo.bar.baz"), Ok(false));
        assert!(parse_uri("www.istio.io").is_ok());
        assert!(
            parse_uri("%aé").is_err_and(|error| error.contains("invalid URL escape")),
            "no panic on a split character"
        );
        assert!(parse_uri("urn:foo").is_ok());
        assert_eq!(
            parse_uri(":/").err().as_deref(),
            Some("error converting string to uri ':/': 'parse :/: missing protocol scheme'")
        );
    }
}
