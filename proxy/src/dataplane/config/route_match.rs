//! Route matching: a route's `match` compiled once — the path (prefix, exact, safe regex,
//! path-separated prefix, optionally case-insensitive), header matchers (pseudo-headers
//! included, through the caller's lookup) and query-parameter matchers — and evaluated per
//! request.

use envoy_types::pb::envoy::config::route::v3 as envoy_route;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route_match::PathSpecifier,
};
use regex::Regex;

use super::matcher::{full_regex, StringMatcher};
use super::ConfigError;

#[derive(Debug)]
pub(crate) struct RouteMatcher {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query_parameters: Vec<QueryMatch>,
}

#[derive(Debug)]
pub(crate) enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    /// `path_separated_prefix`: the prefix is a whole number of path segments.
    SeparatedPrefix(String),
}

#[derive(Debug)]
pub(crate) struct HeaderMatch {
    pub name: String,
    pub rule: HeaderRule,
    pub invert: bool,
}

#[derive(Debug)]
pub(crate) enum HeaderRule {
    Present(bool),
    Value(StringMatcher),
    Range(i64, i64),
}

#[derive(Debug)]
pub(crate) struct QueryMatch {
    pub name: String,
    /// `None`: the parameter only has to be present.
    pub value: Option<StringMatcher>,
}

impl RouteMatcher {
    pub(crate) fn compile(matcher: &envoy_route::RouteMatch, at: &str) -> Result<RouteMatcher, ConfigError> {
        let case_sensitive = matcher.case_sensitive.as_ref().is_none_or(|value| value.value);
        let fold = |text: &String| if case_sensitive { text.clone() } else { text.to_lowercase() };
        let path = match &matcher.path_specifier {
            Some(PathSpecifier::Prefix(prefix)) => PathMatch::Prefix(fold(prefix)),
            Some(PathSpecifier::Path(path)) => PathMatch::Exact(fold(path)),
            Some(PathSpecifier::SafeRegex(regex)) => PathMatch::Regex(full_regex(&regex.regex, at)?),
            Some(PathSpecifier::PathSeparatedPrefix(prefix)) => PathMatch::SeparatedPrefix(fold(prefix)),
            Some(_) => return Err(ConfigError::new(at, "this path matcher is not supported")),
            None => return Err(ConfigError::new(at, "a route match needs a path specifier")),
        };
        let headers = matcher
            .headers
            .iter()
            .enumerate()
            .map(|(index, header)| HeaderMatch::compile(header, &format!("{at}.headers[{index}]")))
            .collect::<Result<_, ConfigError>>()?;
        let query_parameters = matcher
            .query_parameters
            .iter()
            .enumerate()
            .map(|(index, query)| {
                let field = format!("{at}.query_parameters[{index}]");
                let value = match &query.query_parameter_match_specifier {
                    Some(QueryParameterMatchSpecifier::StringMatch(matcher)) => {
                        Some(StringMatcher::compile(matcher, &field)?)
                    }
                    Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => None,
                };
                Ok(QueryMatch { name: query.name.clone(), value })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(RouteMatcher { path, case_sensitive, headers, query_parameters })
    }

    /// Whether a request with this path (query included), header lookup and query matches.
    pub(crate) fn matches<'a>(&self, path_and_query: &str, header: impl Fn(&str) -> Option<&'a str>) -> bool {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let path_ok = match &self.path {
            PathMatch::Regex(regex) => regex.is_match(path),
            other => {
                let folded;
                let path = if self.case_sensitive {
                    path
                } else {
                    folded = path.to_lowercase();
                    &folded
                };
                match other {
                    PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
                    PathMatch::Exact(exact) => path == exact,
                    PathMatch::SeparatedPrefix(prefix) => {
                        path == prefix || (path.starts_with(prefix.as_str()) && path[prefix.len()..].starts_with('/'))
                    }
                    PathMatch::Regex(_) => false,
                }
            }
        };
        if !path_ok {
            return false;
        }
        let headers_ok = self.headers.iter().all(|rule| rule.matches(header(&rule.name)));
        headers_ok
            && self.query_parameters.iter().all(|rule| {
                query_value(query, &rule.name)
                    .is_some_and(|value| rule.value.as_ref().is_none_or(|matcher| matcher.matches(&value)))
            })
    }
}

impl HeaderMatch {
    /// A `HeaderMatcher` (routes' and RBAC's); the name is lower-cased, as header names are.
    pub(crate) fn compile(header: &envoy_route::HeaderMatcher, field: &str) -> Result<HeaderMatch, ConfigError> {
        // The deprecated specifiers are still what older control planes send.
        #[allow(deprecated)]
        let rule = match &header.header_match_specifier {
            Some(HeaderMatchSpecifier::ExactMatch(value)) => {
                HeaderRule::Value(StringMatcher::Exact(value.clone(), false))
            }
            Some(HeaderMatchSpecifier::PrefixMatch(value)) => {
                HeaderRule::Value(StringMatcher::Prefix(value.clone(), false))
            }
            Some(HeaderMatchSpecifier::SuffixMatch(value)) => {
                HeaderRule::Value(StringMatcher::Suffix(value.clone(), false))
            }
            Some(HeaderMatchSpecifier::ContainsMatch(value)) => {
                HeaderRule::Value(StringMatcher::Contains(value.clone(), false))
            }
            Some(HeaderMatchSpecifier::SafeRegexMatch(regex)) => {
                HeaderRule::Value(StringMatcher::Regex(full_regex(&regex.regex, field)?))
            }
            Some(HeaderMatchSpecifier::StringMatch(matcher)) => {
                HeaderRule::Value(StringMatcher::compile(matcher, field)?)
            }
            Some(HeaderMatchSpecifier::PresentMatch(present)) => HeaderRule::Present(*present),
            Some(HeaderMatchSpecifier::RangeMatch(range)) => HeaderRule::Range(range.start, range.end),
            None => HeaderRule::Present(true),
        };
        Ok(HeaderMatch { name: header.name.to_lowercase(), rule, invert: header.invert_match })
    }

    /// Whether the header's value (`None`: absent) satisfies the matcher.
    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        let matched = match &self.rule {
            HeaderRule::Present(present) => value.is_some() == *present,
            HeaderRule::Value(matcher) => value.is_some_and(|value| matcher.matches(value)),
            HeaderRule::Range(start, end) => value
                .and_then(|value| value.parse::<i64>().ok())
                .is_some_and(|number| number >= *start && number < *end),
        };
        matched != self.invert
    }
}

/// The (percent-decoded) value of query parameter `name`, `""` when it has none.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let digit = |byte: u8| (byte as char).to_digit(16);
                match (digit(bytes[index + 1]), digit(bytes[index + 2])) {
                    (Some(high), Some(low)) => {
                        decoded.push((high * 16 + low) as u8);
                        index += 3;
                        continue;
                    }
                    _ => decoded.push(b'%'),
                }
            }
            b'+' => decoded.push(b' '),
            other => decoded.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::RouteMatch;

    #[test]
    fn path_query_and_case_rules() {
        let matcher = RouteMatcher::compile(
            &RouteMatch {
                path_specifier: Some(PathSpecifier::PathSeparatedPrefix("/api".into())),
                case_sensitive: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
                query_parameters: vec![envoy_route::QueryParameterMatcher {
                    name: "debug".into(),
                    query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::PresentMatch(true)),
                }],
                ..Default::default()
            },
            "m",
        )
        .expect("compile");
        assert!(matcher.matches("/API/x?debug", |_| None));
        assert!(matcher.matches("/api?a=1&debug=yes", |_| None));
        assert!(!matcher.matches("/apix?debug", |_| None));
        assert!(!matcher.matches("/api/x", |_| None));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(query_value("a=1&b=x%20y+z", "b"), Some("x y z".into()));
        assert_eq!(query_value("a", "a"), Some(String::new()));
        assert_eq!(query_value("a=1", "c"), None);
    }
}
