//! Trust-domain aliases in authorization policies, as Istio 1.4's trust-domain migration did
//! it: a principal `TD/ns/N/sa/S` whose trust domain is the mesh's, one of its aliases (a
//! leading or trailing `*` wildcard matching either way), or `cluster.local`, stands for the
//! same identity in every one of the mesh's trust domains (its own first, then the aliases);
//! one naming another trust domain is kept as written, with a warning. Principals that are not
//! of that shape (`*`, a bare name) and those whose trust domain is `*` are kept as written.

/// `value` matches `pattern` with `*` alone, or at its start or end, as a wildcard.
fn wildcard(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    pattern == value
}

/// Expands `principals` over `trust_domains` (the mesh's own first, then its aliases).
pub(crate) fn expand(principals: &[String], trust_domains: &[String]) -> Vec<String> {
    let mut expanded: Vec<String> = Vec::new();
    let mut push = |principal: String| {
        if !expanded.contains(&principal) {
            expanded.push(principal);
        }
    };
    for principal in principals {
        let parts: Vec<&str> = principal.split('/').collect();
        if parts.len() != 5 || parts[0] == "*" {
            push(principal.clone());
            continue;
        }
        let domain = parts[0];
        let known = domain == "cluster.local"
            || trust_domains.iter().any(|known| wildcard(known, domain) || wildcard(domain, known));
        if !known {
            tracing::warn!(
                "trust domain {domain} of principal {principal} is neither the mesh's nor one of its aliases; kept as written"
            );
            push(principal.clone());
            continue;
        }
        let rest = parts[1..].join("/");
        for trust_domain in trust_domains {
            let same = domain.strip_prefix('*').is_some_and(|suffix| trust_domain.ends_with(suffix));
            push(if same { principal.clone() } else { format!("{trust_domain}/{rest}") });
        }
    }
    expanded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(principal: &str, trust_domains: &[&str]) -> Vec<String> {
        let domains: Vec<String> = trust_domains.iter().map(|domain| domain.to_string()).collect();
        expand(&[principal.to_string()], &domains)
    }

    #[test]
    fn principals_stand_for_every_trust_domain_of_the_mesh() {
        assert_eq!(expanded("td1/ns/foo/sa/bar", &["td2", "td1"]), ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]);
        assert_eq!(
            expanded("td1/ns/foo/sa/bar", &["td1", "td2", "td3"]),
            ["td1/ns/foo/sa/bar", "td2/ns/foo/sa/bar", "td3/ns/foo/sa/bar"]
        );
        assert_eq!(
            expanded("cluster.local/ns/istio-system/sa/http-viewer", &["td1", "cluster.local"]),
            ["td1/ns/istio-system/sa/http-viewer", "cluster.local/ns/istio-system/sa/http-viewer"]
        );
        assert_eq!(
            expanded("cluster.local/ns/foo/sa/bar", &["td1"]),
            ["td1/ns/foo/sa/bar"],
            "cluster.local always maps"
        );
    }

    #[test]
    fn wildcards_and_other_shapes() {
        assert_eq!(expanded("*/ns/foo/sa/bar", &["td1"]), ["*/ns/foo/sa/bar"]);
        assert_eq!(expanded("*", &["td1"]), ["*"]);
        assert_eq!(
            expanded("*-td/ns/foo/sa/bar", &["foo-td", "td1", "td2"]),
            ["*-td/ns/foo/sa/bar", "td1/ns/foo/sa/bar", "td2/ns/foo/sa/bar"]
        );
        assert_eq!(expanded("*bar/ns/foo/sa/bar", &["td1", "foobar"]), ["td1/ns/foo/sa/bar", "*bar/ns/foo/sa/bar"]);
        assert_eq!(expanded("other/ns/foo/sa/bar", &["td1"]), ["other/ns/foo/sa/bar"], "an unknown domain stays");
    }
}
