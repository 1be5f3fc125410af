//! Which quotas a request is charged, from the `QuotaSpec`s bound to its service
//! (`istio.mixer.v1.config.client`): a rule with no `match`, or one of whose matches holds,
//! charges all its quotas. A match holds when every clause names a string attribute that
//! equals, starts with, or fully matches (regex) what it says.

use istio_api::pb::istio::mixer::v1::config::client::{string_match::MatchType, AttributeMatch, QuotaSpec};

use crate::bag::MapBag;

/// A quota to ask for and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub quota: String,
    pub charge: i64,
}

fn clause_holds(bag: &MapBag, name: &str, matcher: &Option<MatchType>) -> bool {
    let Some(text) = bag.get_value(name).and_then(|value| value.as_str()) else { return false };
    match matcher {
        None => true,
        Some(MatchType::Exact(exact)) => text == exact,
        Some(MatchType::Prefix(prefix)) => text.starts_with(prefix.as_str()),
        Some(MatchType::Regex(pattern)) => {
            regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|regex| regex.is_match(text))
        }
    }
}

fn match_holds(bag: &MapBag, matched: &AttributeMatch) -> bool {
    matched.clause.iter().all(|(name, string_match)| clause_holds(bag, name, &string_match.match_type))
}

/// The quotas `specs` charge the request whose attributes are `bag`, in rule order.
pub fn requirements(specs: &[QuotaSpec], bag: &MapBag) -> Vec<Requirement> {
    let mut charged = Vec::new();
    for spec in specs {
        for rule in &spec.rules {
            if rule.r#match.is_empty() || rule.r#match.iter().any(|matched| match_holds(bag, matched)) {
                charged.extend(
                    rule.quotas
                        .iter()
                        .map(|quota| Requirement { quota: quota.quota.clone(), charge: i64::from(quota.charge) }),
                );
            }
        }
    }
    charged
}

#[cfg(test)]
mod tests {
    use istio_api::pb::istio::mixer::v1::config::client::{Quota, QuotaRule, StringMatch};

    use super::*;
    use crate::value::Value;

    fn spec(matches: Vec<AttributeMatch>, quota: &str, charge: i32) -> QuotaSpec {
        QuotaSpec { rules: vec![QuotaRule { r#match: matches, quotas: vec![Quota { quota: quota.into(), charge }] }] }
    }

    fn clause(name: &str, matcher: MatchType) -> AttributeMatch {
        AttributeMatch { clause: [(name.to_string(), StringMatch { match_type: Some(matcher) })].into() }
    }

    #[test]
    fn rules_without_matches_always_charge() {
        let bag = MapBag::new();
        assert_eq!(
            requirements(&[spec(vec![], "requestcountquota", 1)], &bag),
            [Requirement { quota: "requestcountquota".into(), charge: 1 }]
        );
    }

    #[test]
    fn matches_need_every_clause_of_one_match() {
        let bag = MapBag::new()
            .with("request.path", Value::String("/books/1".into()))
            .with("request.method", Value::String("GET".into()));
        let get_books = AttributeMatch {
            clause: [
                ("request.path".to_string(), StringMatch { match_type: Some(MatchType::Prefix("/books".into())) }),
                ("request.method".to_string(), StringMatch { match_type: Some(MatchType::Exact("GET".into())) }),
            ]
            .into(),
        };
        assert_eq!(requirements(&[spec(vec![get_books], "q", 5)], &bag).len(), 1);
        let regex = clause("request.path", MatchType::Regex("/books/[0-9]+".into()));
        assert_eq!(requirements(&[spec(vec![regex], "q", 1)], &bag).len(), 1);
        let partial = clause("request.path", MatchType::Regex("/books".into()));
        assert!(requirements(&[spec(vec![partial], "q", 1)], &bag).is_empty(), "regexes match the whole value");
        let absent = clause("request.host", MatchType::Exact("x".into()));
        let other = clause("request.method", MatchType::Exact("POST".into()));
        assert!(requirements(&[spec(vec![absent, other], "q", 1)], &bag).is_empty());
    }
}
