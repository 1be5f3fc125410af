//! Envoy's RBAC filters: `envoy.filters.http.rbac` (a denied request gets 403 `RBAC: access
//! denied`) and `envoy.filters.network.rbac` (a denied connection is closed), each with
//! enforced rules and shadow rules, and Envoy's statistics: `allowed`, `denied`,
//! `shadow_allowed` and `shadow_denied` under `http.<manager prefix>.rbac.` for requests and
//! `<stat_prefix>.rbac.` for connections (the rules' and shadow rules' own prefixes inserted
//! after `rbac.` when configured). The engine is [`engine`].

pub(crate) mod engine;

use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbacConfig;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::{
    rbac::EnforcementType, Rbac as NetworkRbacConfig,
};

use super::config::ConfigError;
use super::stats::{Counter, Stats};
use engine::{Decision, Engine, Subject};

/// The HTTP filter's name and the network filter's, as Envoy registers them.
pub(crate) const HTTP_FILTER: &str = "envoy.filters.http.rbac";
pub(crate) const NETWORK_FILTER: &str = "envoy.filters.network.rbac";
/// The body of a denied request, as Envoy writes it.
pub(crate) const DENIED_BODY: &str = "RBAC: access denied";

/// Enforced and shadow rules, with the prefixes their statistics get, and the counters once
/// looked up.
#[derive(Debug)]
pub(crate) struct Rules {
    /// `None`: everything is allowed (no `rules` configured).
    enforced: Option<Engine>,
    shadow: Option<Engine>,
    rules_prefix: String,
    shadow_prefix: String,
    counters: std::sync::OnceLock<RbacStats>,
}

/// The four counters of one filter instance.
#[derive(Debug)]
pub(crate) struct RbacStats {
    allowed: Counter,
    denied: Counter,
    shadow_allowed: Counter,
    shadow_denied: Counter,
}

/// The enforced and shadow engines of a filter's config.
fn engines(
    rules: Option<&envoy_types::pb::envoy::config::rbac::v3::Rbac>,
    shadow_rules: Option<&envoy_types::pb::envoy::config::rbac::v3::Rbac>,
    at: &str,
) -> Result<(Option<Engine>, Option<Engine>), ConfigError> {
    let enforced = rules.map(|rules| Engine::compile(rules, &format!("{at}.rules"))).transpose()?;
    let shadow = shadow_rules.map(|rules| Engine::compile(rules, &format!("{at}.shadow_rules"))).transpose()?;
    Ok((enforced, shadow))
}

impl Rules {
    /// The HTTP filter's config.
    pub(crate) fn http(config: &HttpRbacConfig, at: &str) -> Result<Rules, ConfigError> {
        if config.matcher.is_some() || config.shadow_matcher.is_some() {
            return Err(ConfigError::new(at, "RBAC matchers (the unified matcher API) are not supported"));
        }
        let (enforced, shadow) = engines(config.rules.as_ref(), config.shadow_rules.as_ref(), at)?;
        Ok(Rules {
            enforced,
            shadow,
            rules_prefix: config.rules_stat_prefix.clone(),
            shadow_prefix: config.shadow_rules_stat_prefix.clone(),
            counters: std::sync::OnceLock::new(),
        })
    }

    /// The network filter's config, with its own stat prefix.
    pub(crate) fn network(config: &NetworkRbacConfig, at: &str) -> Result<(Rules, String), ConfigError> {
        if config.matcher.is_some() || config.shadow_matcher.is_some() {
            return Err(ConfigError::new(at, "RBAC matchers (the unified matcher API) are not supported"));
        }
        if config.enforcement_type == EnforcementType::Continuous as i32 {
            return Err(ConfigError::new(at, "CONTINUOUS enforcement is not supported (ONE_TIME_ON_FIRST_BYTE is)"));
        }
        if config.stat_prefix.is_empty() {
            return Err(ConfigError::new(at, "the RBAC network filter needs a stat_prefix"));
        }
        let (enforced, shadow) = engines(config.rules.as_ref(), config.shadow_rules.as_ref(), at)?;
        let rules = Rules {
            enforced,
            shadow,
            rules_prefix: String::new(),
            shadow_prefix: config.shadow_rules_stat_prefix.clone(),
            counters: std::sync::OnceLock::new(),
        };
        Ok((rules, config.stat_prefix.clone()))
    }

    /// The counters under `prefix` (`http.<manager>.rbac.` or `<stat_prefix>.rbac.`), looked
    /// up the first time.
    fn counters(&self, stats: &Stats, prefix: impl FnOnce() -> String) -> &RbacStats {
        self.counters.get_or_init(|| {
            let prefix = prefix();
            let rules = format!("{prefix}{}", self.rules_prefix);
            let shadow = format!("{prefix}{}", self.shadow_prefix);
            RbacStats {
                allowed: stats.counter(&format!("{rules}allowed")),
                denied: stats.counter(&format!("{rules}denied")),
                shadow_allowed: stats.counter(&format!("{shadow}shadow_allowed")),
                shadow_denied: stats.counter(&format!("{shadow}shadow_denied")),
            }
        })
    }

    /// Evaluates the shadow rules (counted only) and the enforced ones, counting under the
    /// prefix `prefix` gives; the enforced decision is returned (allowed when there are no
    /// rules).
    pub(crate) fn decide(&self, subject: &Subject<'_>, stats: &Stats, prefix: impl FnOnce() -> String) -> Decision {
        let stats = self.counters(stats, prefix);
        if let Some(shadow) = &self.shadow {
            if shadow.decide(subject).allowed {
                stats.shadow_allowed.inc();
            } else {
                stats.shadow_denied.inc();
            }
        }
        let Some(enforced) = &self.enforced else {
            return Decision { allowed: true, policy: None };
        };
        let decision = enforced.decide(subject);
        if decision.allowed {
            stats.allowed.inc();
        } else {
            stats.denied.inc();
        }
        decision
    }
}
