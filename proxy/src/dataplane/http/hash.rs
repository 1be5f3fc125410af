//! The hash for ring-hash load balancing, from the route's hash policies: the first that applies
//! of a header, a cookie, the source IP, or a query parameter.

use http::HeaderMap;

use super::super::config::route::HashPolicy;
use super::super::upstream::ring::hash_of;
use super::downstream::Downstream;

/// The request's hash under `policies`, if any applies.
pub(crate) fn request_hash(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    uri: &http::Uri,
    downstream: &Downstream,
) -> Option<u64> {
    policies.iter().find_map(|policy| match policy {
        HashPolicy::Header(name) => headers.get(name.as_str()).map(|value| hash_of(value.as_bytes())),
        HashPolicy::Cookie { name } => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .filter_map(|cookie| cookie.trim().split_once('='))
            .find(|(key, _)| key == name)
            .map(|(_, value)| hash_of(value)),
        HashPolicy::SourceIp => Some(hash_of(downstream.remote.ip())),
        HashPolicy::QueryParameter(name) => uri
            .query()
            .and_then(|query| query.split('&').find_map(|pair| pair.split_once('=').filter(|(key, _)| key == name)))
            .map(|(_, value)| hash_of(value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(remote: &str) -> Downstream {
        Downstream {
            remote: remote.parse().expect("address"),
            local: "10.0.0.2:9080".parse().expect("address"),
            tls: false,
            peer: None,
            server_name: None,
            inbound: false,
        }
    }

    #[test]
    fn the_first_policy_that_applies_gives_the_hash() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "jason".parse().expect("value"));
        headers.insert(http::header::COOKIE, "a=1; session=abc".parse().expect("value"));
        let uri: http::Uri = "/productpage?user=jason&x=1".parse().expect("uri");
        let client = downstream("10.0.0.1:40000");
        let header = HashPolicy::Header("x-user".into());
        let absent = HashPolicy::Header("x-absent".into());
        let cookie = HashPolicy::Cookie { name: "session".into() };
        let query = HashPolicy::QueryParameter("user".into());

        assert_eq!(
            request_hash(std::slice::from_ref(&header), &headers, &uri, &client),
            Some(hash_of(b"jason".as_slice()))
        );
        assert_eq!(request_hash(&[absent.clone(), cookie], &headers, &uri, &client), Some(hash_of("abc")));
        assert_eq!(request_hash(&[absent.clone(), query], &headers, &uri, &client), Some(hash_of("jason")));
        assert_eq!(request_hash(std::slice::from_ref(&absent), &headers, &uri, &client), None);
        assert_eq!(request_hash(&[], &headers, &uri, &client), None);
        let by_ip = request_hash(&[HashPolicy::SourceIp], &headers, &uri, &client);
        assert_eq!(by_ip, request_hash(&[HashPolicy::SourceIp], &headers, &uri, &downstream("10.0.0.1:50000")));
        assert_ne!(by_ip, request_hash(&[HashPolicy::SourceIp], &headers, &uri, &downstream("10.0.0.9:40000")));
    }
}
