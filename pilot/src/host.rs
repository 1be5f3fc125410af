//! Host names as Istio compares them: exact names and `*` wildcards (`*.wikipedia.org`, `*`).

/// 1.4's `host.Name.Matches`: two host names match when they are equal, or when either is a
/// wildcard (`*.wikipedia.org`, `*`) that covers the other.
pub(crate) fn hosts_match(one: &str, other: &str) -> bool {
    let covers = |wildcard: &str, host: &str| wildcard.strip_prefix('*').is_some_and(|suffix| host.ends_with(suffix));
    one == other || covers(one, other) || covers(other, one)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_match_as_1_4s() {
        assert!(hosts_match("www.wikipedia.org", "www.wikipedia.org"));
        assert!(hosts_match("*.wikipedia.org", "www.wikipedia.org"));
        assert!(hosts_match("www.wikipedia.org", "*.wikipedia.org"));
        assert!(hosts_match("*", "anything.example"));
        assert!(hosts_match("*.org", "*.wikipedia.org"));
        assert!(!hosts_match("*.wikipedia.org", "wikipedia.org"));
        assert!(!hosts_match("en.wikipedia.org", "de.wikipedia.org"));
    }
}
