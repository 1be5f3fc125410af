//! Why a value in an Istio object is invalid, one variant a rule, each printed with Istio 1.4's
//! wording. The rules return these; the report records them against the field they were found
//! in.

/// One invalid value, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum Invalid {
    #[error("domain name {0:?} too long (max 255)")]
    DomainTooLong(String),
    #[error("empty domain name not allowed")]
    EmptyDomain,
    #[error("domain name {domain:?} invalid (top level domain {top_level:?} cannot be all-numeric)")]
    NumericTopLevelDomain { domain: String, top_level: String },
    #[error("domain name {domain:?} invalid (label {label:?} invalid)")]
    DomainLabel { domain: String, label: String },
    #[error("invalid tag value: {0:?}")]
    LabelValue(String),
    #[error("invalid tag key: {0:?}")]
    LabelKey(String),
    #[error("port number {0} must be in the range 1..65535")]
    Port(i64),
    #[error("port {0:?} is not a number")]
    PortNotANumber(String),
    #[error("invalid port name: {0}")]
    PortName(String),
    #[error("unrecognized protocol {0:?}")]
    Protocol(String),
    #[error("percentage {0} is not in range 0..100")]
    Percent(i64),
    #[error("percentage {0} is neither 0.0, nor in range [0.0001, 100.0]")]
    Percentage(f64),
    #[error("duration must be greater than 1ms")]
    DurationTooShort,
    #[error("only durations to ms precision are supported")]
    DurationPrecision,
    #[error("time {duration} should be >={min} and <={max}")]
    DurationRange { duration: String, min: String, max: String },
    #[error("{0:?} must be of the form host:port")]
    NotHostPort(String),
    #[error("{0:?} has an invalid port")]
    AddressPort(String),
    #[error("{address:?} has an invalid host {host:?}")]
    AddressHost { address: String, host: String },
    #[error("{0:?} is not a valid IP")]
    Ip(String),
    #[error("{0:?} is not a valid CIDR block")]
    Cidr(String),
    #[error("unix address must not be empty")]
    EmptyUnixAddress,
    #[error("unix address {0:?} must not contain NUL")]
    UnixAddressNul(String),
    #[error("unix address {0:?} must be an absolute path")]
    UnixAddressRelative(String),
    #[error("header name cannot be empty")]
    EmptyHeaderName,
    #[error("header name {0:?} is not a valid header name")]
    HeaderName(String),
    #[error("{0:?} is not a supported HTTP method")]
    HttpMethod(String),
    #[error("only . or * is allowed in the exportTo in the current release, found {0:?}")]
    ExportTo(String),
    #[error("exportTo should have only one entry (. or *) in the current release")]
    ExportToMany,
    #[error("invalid regex {pattern:?}: {source}")]
    Regex { pattern: String, source: regex::Error },
    #[error("invalid regex {pattern:?}: invalid nested repetition operator: `{operator}`")]
    RegexNestedRepetition { pattern: String, operator: String },
    #[error("subset name cannot be empty")]
    EmptySubsetName,
    #[error("subset name is invalid: {0}")]
    SubsetName(String),
    #[error("host {0:?} must be of form namespace/dnsName")]
    NotNamespaceSlashHost(String),
    #[error("config namespace and dnsName in host entry cannot be empty")]
    EmptyNamespaceOrHost,
    #[error("invalid namespace value {namespace:?} in {place}")]
    HostNamespace { namespace: String, place: &'static str },
    #[error("can not simultaneously specify 'distribute' and 'failover'")]
    DistributeAndFailover,
    #[error("locality weight must be in range [1, 100]")]
    LocalityWeight,
    #[error("total locality weight {0} != 100")]
    LocalityWeightTotal(u64),
    #[error("locality lb failover settings must specify different regions")]
    FailoverSameRegion,
    #[error("locality lb failover region should not contain '*' wildcard")]
    FailoverWildcard,
    #[error("empty locality is not allowed")]
    EmptyLocality,
    #[error("locality {0} wildcard '*' number can not exceed 1 and must be in the end")]
    LocalityWildcard(String),
    #[error("locality {0} overlap with previous specified ones")]
    LocalityOverlap(String),
    #[error("string match must set exact, prefix, suffix or regex")]
    StringMatchUnset,
    #[error("string match value must not be empty")]
    StringMatchEmpty,
    #[error("jwksUri {0:?} is not an absolute URL")]
    JwksNotAbsolute(String),
    #[error("URI scheme {0:?} is not supported")]
    UriScheme(String),
    #[error("jwksUri {0:?} has no host")]
    JwksNoHost(String),
    #[error("jwksUri {uri:?} has an invalid port {port:?}")]
    JwksPort { uri: String, port: String },
    #[error("unknown attribute ({0})")]
    UnknownAttribute(String),
}
