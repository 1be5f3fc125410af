//! Attribute values as Mixer sees them: the eleven value types of `policy.v1beta1.ValueType` and
//! one [`Value`] that borrows from the bag or the compiled expression it came from, so reading
//! an attribute or comparing two copies nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

pub use istio_api::pb::istio::policy::v1beta1::ValueType;

/// A string map attribute (`request.headers`, `source.labels`).
pub type StringMap = HashMap<String, String>;

/// An instant as nanoseconds since the Unix epoch (signed: 1977 is before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i128);

impl Timestamp {
    /// From the protobuf form.
    pub fn from_parts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
    }

    /// To the protobuf form (`seconds`, `nanos` with `0 <= nanos < 1e9`).
    pub fn to_parts(self) -> (i64, i32) {
        let seconds = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        (i64::try_from(seconds).unwrap_or(i64::MAX), i32::try_from(nanos).unwrap_or(0))
    }

    /// Parses RFC 3339 text (`2015-01-02T15:04:35Z`, fractions and offsets allowed).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Timestamp(parsed.unix_timestamp_nanos()))
    }

    /// Now, from the system clock.
    pub fn now() -> Timestamp {
        Timestamp(time::OffsetDateTime::now_utc().unix_timestamp_nanos())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp_nanos(self.0)
            .ok()
            .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        {
            Some(text) => f.write_str(&text),
            None => write!(f, "{}ns", self.0),
        }
    }
}

/// One attribute value. Strings, bytes and maps borrow where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    String(Cow<'a, str>),
    Int64(i64),
    Double(f64),
    Bool(bool),
    Timestamp(Timestamp),
    /// Nanoseconds; negative durations exist (`"-2s"`).
    Duration(i64),
    /// 4 or 16 bytes, as the wire carries them.
    IpAddress(Cow<'a, [u8]>),
    EmailAddress(Cow<'a, str>),
    Uri(Cow<'a, str>),
    DnsName(Cow<'a, str>),
    StringMap(Cow<'a, StringMap>),
    /// A bytes attribute with no more specific type (only the wire has these).
    Bytes(Cow<'a, [u8]>),
}

/// A value that owns its data, as bags store them.
pub type OwnedValue = Value<'static>;

static EMPTY_MAP: LazyLock<StringMap> = LazyLock::new(StringMap::new);

/// The shared empty map `emptyStringMap()` returns.
pub fn empty_string_map() -> &'static StringMap {
    &EMPTY_MAP
}

impl<'a> Value<'a> {
    /// The value type this value has (bytes count as an IP address, the only bytes type).
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Int64(_) => ValueType::Int64,
            Value::Double(_) => ValueType::Double,
            Value::Bool(_) => ValueType::Bool,
            Value::Timestamp(_) => ValueType::Timestamp,
            Value::Duration(_) => ValueType::Duration,
            Value::IpAddress(_) | Value::Bytes(_) => ValueType::IpAddress,
            Value::EmailAddress(_) => ValueType::EmailAddress,
            Value::Uri(_) => ValueType::Uri,
            Value::DnsName(_) => ValueType::DnsName,
            Value::StringMap(_) => ValueType::StringMap,
        }
    }

    /// A copy that borrows from this one.
    pub fn borrowed(&self) -> Value<'_> {
        match self {
            Value::String(text) => Value::String(Cow::Borrowed(text)),
            Value::Int64(value) => Value::Int64(*value),
            Value::Double(value) => Value::Double(*value),
            Value::Bool(value) => Value::Bool(*value),
            Value::Timestamp(value) => Value::Timestamp(*value),
            Value::Duration(value) => Value::Duration(*value),
            Value::IpAddress(bytes) => Value::IpAddress(Cow::Borrowed(bytes)),
            Value::EmailAddress(text) => Value::EmailAddress(Cow::Borrowed(text)),
            Value::Uri(text) => Value::Uri(Cow::Borrowed(text)),
            Value::DnsName(text) => Value::DnsName(Cow::Borrowed(text)),
            Value::StringMap(map) => Value::StringMap(Cow::Borrowed(map)),
            Value::Bytes(bytes) => Value::Bytes(Cow::Borrowed(bytes)),
        }
    }

    /// A copy that owns its data.
    pub fn into_owned(self) -> OwnedValue {
        match self {
            Value::String(text) => Value::String(Cow::Owned(text.into_owned())),
            Value::Int64(value) => Value::Int64(value),
            Value::Double(value) => Value::Double(value),
            Value::Bool(value) => Value::Bool(value),
            Value::Timestamp(value) => Value::Timestamp(value),
            Value::Duration(value) => Value::Duration(value),
            Value::IpAddress(bytes) => Value::IpAddress(Cow::Owned(bytes.into_owned())),
            Value::EmailAddress(text) => Value::EmailAddress(Cow::Owned(text.into_owned())),
            Value::Uri(text) => Value::Uri(Cow::Owned(text.into_owned())),
            Value::DnsName(text) => Value::DnsName(Cow::Owned(text.into_owned())),
            Value::StringMap(map) => Value::StringMap(Cow::Owned(map.into_owned())),
            Value::Bytes(bytes) => Value::Bytes(Cow::Owned(bytes.into_owned())),
        }
    }

    /// The text of a string-like value (string, DNS name, e-mail address, URI).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => Some(text),
            _ => None,
        }
    }

    /// The address of an IP value (4 or 16 bytes).
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self {
            Value::IpAddress(bytes) | Value::Bytes(bytes) => ip_from_bytes(bytes),
            _ => None,
        }
    }

    /// Whether two values are the same attribute value (IP addresses compared as addresses,
    /// doubles bit for bit apart from NaN).
    pub fn same_as(&self, other: &Value<'_>) -> bool {
        match (self, other) {
            (Value::IpAddress(_) | Value::Bytes(_), Value::IpAddress(_) | Value::Bytes(_)) => {
                match (self.as_ip(), other.as_ip()) {
                    (Some(left), Some(right)) => canonical_ip(left) == canonical_ip(right),
                    _ => self.bytes() == other.bytes(),
                }
            }
            (Value::StringMap(left), Value::StringMap(right)) => left == right,
            _ => {
                self.value_type() == other.value_type() && self.as_str() == other.as_str() && {
                    match (self, other) {
                        (Value::Int64(a), Value::Int64(b)) | (Value::Duration(a), Value::Duration(b)) => a == b,
                        (Value::Double(a), Value::Double(b)) => a == b,
                        (Value::Bool(a), Value::Bool(b)) => a == b,
                        (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
                        _ => true,
                    }
                }
            }
        }
    }

    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::IpAddress(bytes) | Value::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// An IP address from its 4- or 16-byte form.
pub fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    <[u8; 16]>::try_from(bytes).ok().map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
}

/// An IPv4-mapped IPv6 address as plain IPv4, so the two forms compare equal.
pub fn canonical_ip(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The 16-byte form Go's `net.ParseIP` gives (IPv4 as IPv4-mapped IPv6).
pub fn ip_to_16_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => {
                f.write_str(text)
            }
            Value::Int64(value) => write!(f, "{value}"),
            Value::Double(value) => write!(f, "{value}"),
            Value::Bool(value) => write!(f, "{value}"),
            Value::Timestamp(value) => write!(f, "{value}"),
            Value::Duration(nanos) => {
                let magnitude = istio_duration::format(std::time::Duration::from_nanos(nanos.unsigned_abs()));
                if *nanos < 0 {
                    write!(f, "-{magnitude}")
                } else {
                    f.write_str(&magnitude)
                }
            }
            Value::IpAddress(bytes) | Value::Bytes(bytes) => match ip_from_bytes(bytes) {
                Some(address) => write!(f, "{}", canonical_ip(address)),
                None => write!(f, "{bytes:?}"),
            },
            Value::StringMap(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort();
                f.write_str("map[")?;
                for (position, (key, value)) in entries.into_iter().enumerate() {
                    if position > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{key}:{value}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_its_mapped_form_are_the_same_address() {
        let four = Value::IpAddress(Cow::Borrowed(&[1, 2, 3, 4]));
        let mapped = Value::IpAddress(Cow::Owned(ip_to_16_bytes("1.2.3.4".parse().expect("ip")).to_vec()));
        assert!(four.same_as(&mapped));
        assert_eq!(mapped.to_string(), "1.2.3.4");
    }

    #[test]
    fn timestamps_round_trip_through_parts_and_text() {
        let at = Timestamp::parse_rfc3339("1969-02-04T12:00:00.5Z").expect("parse");
        assert_eq!(Timestamp::from_parts(at.to_parts().0, at.to_parts().1), at);
        assert_eq!(at.to_parts().1, 500_000_000);
        assert!(at.0 < 0);
        assert_eq!(at.to_string(), "1969-02-04T12:00:00.5Z");
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(Value::Duration(19_000_000).to_string(), "19ms");
        assert_eq!(Value::Duration(-2_000_000_000).to_string(), "-2s");
    }
}
