//! Envoy's `envoy.filters.http.jwt_authn`: providers (issuer, audiences, an inline JWKS, where
//! the token is looked for, whether it is forwarded, where its payload goes in the dynamic
//! metadata), requirement rules chosen by route match (first match wins; no match, no check),
//! and requirements nested with `requires_any` / `requires_all`, `allow_missing` and
//! `allow_missing_or_failed`. A request that fails its requirement gets 401 with Envoy's
//! reason (403 when only the audience is wrong); the counters are `http.<prefix>.jwt_authn.
//! allowed|denied`. Token checks are in [`token`].

pub(crate) mod token;

use std::collections::HashMap;

use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType, requirement_rule::RequirementType,
    JwtAuthentication, JwtProvider, JwtRequirement,
};
use serde_json::{Map, Value};

use super::config::route_match::RouteMatcher;
use super::config::ConfigError;
use token::{Checks, JwtError, KeySet};

/// The filter's name, as Envoy registers it.
pub(crate) const FILTER: &str = "envoy.filters.http.jwt_authn";
/// Envoy's default clock skew, in seconds.
const DEFAULT_CLOCK_SKEW: u64 = 60;

/// Where a provider looks for its token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A header, with the prefix its value carries before the token (`Bearer `).
    Header { name: String, prefix: String },
    /// A query parameter.
    Param(String),
}

/// How many verified tokens a provider remembers (Envoy's default `jwt_cache_size`).
const VERIFIED_CACHE_SIZE: usize = 100;

#[derive(Debug)]
struct Provider {
    checks: Checks,
    keys: KeySet,
    /// Payloads of tokens whose signature verified, by token; a token seen again has only
    /// its claims checked (as Envoy's JWT cache does). Emptied when full.
    verified: std::sync::Mutex<HashMap<String, std::sync::Arc<Value>>>,
    locations: Vec<Location>,
    forward: bool,
    payload_in_metadata: String,
}

/// A compiled `JwtRequirement`.
#[derive(Debug)]
enum Requirement {
    Provider { name: String, audiences: Option<Vec<String>> },
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    AllowMissingOrFailed,
    AllowMissing,
}

/// One filter instance.
#[derive(Debug)]
pub(crate) struct JwtAuthn {
    providers: HashMap<String, Provider>,
    /// Rules in order; `None`: the matched requests need no token.
    rules: Vec<(RouteMatcher, Option<Requirement>)>,
    bypass_cors_preflight: bool,
}

/// What a request shows the filter.
pub(crate) trait TokenSource {
    fn header(&self, name: &str) -> Option<&str>;
    fn query_param(&self, name: &str) -> Option<String>;
    fn path_and_query(&self) -> &str;
    fn is_cors_preflight(&self) -> bool;
}

/// The filter's verdict on one request.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// `Err`: the request is refused with this reason.
    pub result: Option<JwtError>,
    /// Verified payloads by `payload_in_metadata` key.
    pub payloads: Map<String, Value>,
    /// Headers that held verified tokens of providers that do not forward them.
    pub strip_headers: Vec<String>,
}

impl JwtAuthn {
    /// Compiles the filter's config; `at` names it in errors.
    pub(crate) fn compile(config: &JwtAuthentication, at: &str) -> Result<JwtAuthn, ConfigError> {
        if config.filter_state_rules.is_some() {
            return Err(ConfigError::new(at, "filter_state_rules are not supported"));
        }
        let mut providers = HashMap::new();
        for (name, provider) in &config.providers {
            providers.insert(name.clone(), compile_provider(provider, &format!("{at}.providers[{name}]"))?);
        }
        let mut rules = Vec::new();
        for (index, rule) in config.rules.iter().enumerate() {
            let field = format!("{at}.rules[{index}]");
            let matcher = rule.r#match.as_ref().ok_or_else(|| ConfigError::new(&field, "a rule needs a match"))?;
            let matcher = RouteMatcher::compile(matcher, &format!("{field}.match"))?;
            let requirement = match &rule.requirement_type {
                None => None,
                Some(RequirementType::Requires(requirement)) => {
                    Some(compile_requirement(requirement, &providers, &format!("{field}.requires"))?)
                }
                Some(RequirementType::RequirementName(name)) => {
                    let named = config.requirement_map.get(name).ok_or_else(|| {
                        ConfigError::new(&field, format!("requirement_name {name} is not in requirement_map"))
                    })?;
                    Some(compile_requirement(named, &providers, &format!("{at}.requirement_map[{name}]"))?)
                }
            };
            rules.push((matcher, requirement));
        }
        Ok(JwtAuthn { providers, rules, bypass_cors_preflight: config.bypass_cors_preflight })
    }

    /// Checks a request against the first rule its route matches.
    pub(crate) fn authenticate(&self, request: &dyn TokenSource) -> Outcome {
        let mut outcome = Outcome::default();
        if self.bypass_cors_preflight && request.is_cors_preflight() {
            return outcome;
        }
        let path = request.path_and_query();
        let Some((_, requirement)) =
            self.rules.iter().find(|(matcher, _)| matcher.matches(path, |name| request.header(name)))
        else {
            return outcome;
        };
        let Some(requirement) = requirement else { return outcome };
        if let Err(error) = self.check(requirement, request, &mut outcome) {
            outcome.result = Some(error);
        }
        outcome
    }

    fn check(
        &self,
        requirement: &Requirement,
        request: &dyn TokenSource,
        outcome: &mut Outcome,
    ) -> Result<(), JwtError> {
        match requirement {
            Requirement::Provider { name, audiences } => {
                // Every token at the provider's locations must verify, as in Envoy: a good
                // token does not carry a bad one past the filter to the application.
                let provider = &self.providers[name];
                let tokens = extract(&provider.locations, request);
                if tokens.is_empty() {
                    return Err(JwtError::Missing);
                }
                tokens
                    .iter()
                    .try_for_each(|(raw, location)| self.accept(provider, raw, location, audiences.as_deref(), outcome))
            }
            Requirement::Any(alternatives) => {
                // The client hears the first reason that is neither "no token" nor "unknown
                // issuer" (then unknown issuer, then no token), as in Envoy. `allow_missing`
                // among the alternatives only turns "no token" into success.
                let missing_like = |error: JwtError| matches!(error, JwtError::Missing | JwtError::UnknownIssuer);
                let mut failure: Option<JwtError> = None;
                let mut allow_missing = false;
                for alternative in alternatives {
                    if matches!(alternative, Requirement::AllowMissing) {
                        allow_missing = true;
                        continue;
                    }
                    match self.check(alternative, request, outcome) {
                        Ok(()) => return Ok(()),
                        Err(JwtError::Missing) => failure = failure.or(Some(JwtError::Missing)),
                        Err(JwtError::UnknownIssuer) => {
                            if failure.is_none_or(|failure| failure == JwtError::Missing) {
                                failure = Some(JwtError::UnknownIssuer);
                            }
                        }
                        Err(error) => {
                            if failure.is_none_or(missing_like) {
                                failure = Some(error);
                            }
                        }
                    }
                }
                match failure.unwrap_or(JwtError::Missing) {
                    JwtError::Missing if allow_missing => Ok(()),
                    failure => Err(failure),
                }
            }
            Requirement::All(all) => all.iter().try_for_each(|one| self.check(one, request, outcome)),
            Requirement::AllowMissingOrFailed => {
                let _ = self.check_every_token(request, outcome);
                Ok(())
            }
            Requirement::AllowMissing => self.check_every_token(request, outcome),
        }
    }

    /// Verifies every token any provider would find, each with the provider of its issuer
    /// (payloads of the good ones are kept); the first failure is returned.
    fn check_every_token(&self, request: &dyn TokenSource, outcome: &mut Outcome) -> Result<(), JwtError> {
        let mut seen: Vec<String> = Vec::new();
        let mut failure = None;
        let mut names: Vec<&String> = self.providers.keys().collect();
        names.sort();
        let tokens = names.into_iter().flat_map(|name| extract(&self.providers[name].locations, request));
        for (raw, location) in tokens {
            if seen.contains(&raw) {
                continue;
            }
            seen.push(raw.clone());
            let result = match token::parse(&raw) {
                Err(error) => Err(error),
                Ok(parsed) => {
                    let issuer = parsed.issuer().to_string();
                    match self.providers.values().find(|provider| provider.checks.issuer == issuer) {
                        None => Err(JwtError::UnknownIssuer),
                        Some(provider) => self.accept(provider, &raw, &location, None, outcome),
                    }
                }
            };
            if let Err(error) = result {
                failure = failure.or(Some(error));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Verifies one token for one provider, recording its payload and whether its header goes.
    fn accept(
        &self,
        provider: &Provider,
        raw: &str,
        location: &Location,
        audiences: Option<&[String]>,
        outcome: &mut Outcome,
    ) -> Result<(), JwtError> {
        let cached = provider.verified.lock().ok().and_then(|verified| verified.get(raw).cloned());
        let payload = match cached {
            Some(payload) => {
                let Value::Object(claims) = payload.as_ref() else { return Err(JwtError::PayloadBadJson) };
                token::check_claims(claims, &provider.checks, audiences)?;
                payload
            }
            None => {
                let parsed = token::parse(raw)?;
                token::verify(&parsed, &provider.checks, audiences, &provider.keys)?;
                let payload = std::sync::Arc::new(Value::Object(parsed.payload));
                if let Ok(mut verified) = provider.verified.lock() {
                    if verified.len() >= VERIFIED_CACHE_SIZE {
                        verified.clear();
                    }
                    verified.insert(raw.to_string(), payload.clone());
                }
                payload
            }
        };
        if !provider.payload_in_metadata.is_empty() {
            outcome.payloads.insert(provider.payload_in_metadata.clone(), payload.as_ref().clone());
        }
        if let (false, Location::Header { name, .. }) = (provider.forward, location) {
            outcome.strip_headers.push(name.clone());
        }
        Ok(())
    }
}

/// Every token found at the provider's locations, and where.
fn extract(locations: &[Location], request: &dyn TokenSource) -> Vec<(String, Location)> {
    locations
        .iter()
        .filter_map(|location| {
            let token = match location {
                Location::Header { name, prefix } => {
                    let value = request.header(name)?;
                    if prefix.is_empty() {
                        value.trim().to_string()
                    } else {
                        // As Envoy: after the prefix, the characters a JWT is made of.
                        let after = &value[value.find(prefix.as_str())? + prefix.len()..];
                        after
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
                            .collect()
                    }
                }
                Location::Param(name) => request.query_param(name)?,
            };
            (!token.is_empty()).then(|| (token, location.clone()))
        })
        .collect()
}

fn compile_provider(provider: &JwtProvider, at: &str) -> Result<Provider, ConfigError> {
    let jwks = match &provider.jwks_source_specifier {
        Some(JwksSourceSpecifier::LocalJwks(source)) => {
            use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
            match &source.specifier {
                Some(Specifier::InlineString(text)) => text.clone(),
                Some(Specifier::InlineBytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                Some(Specifier::Filename(path)) => std::fs::read_to_string(path)
                    .map_err(|error| ConfigError::new(&format!("{at}.local_jwks"), format!("{path}: {error}")))?,
                _ => {
                    return Err(ConfigError::new(
                        &format!("{at}.local_jwks"),
                        "needs an inline string, bytes or a file",
                    ))
                }
            }
        }
        Some(JwksSourceSpecifier::RemoteJwks(_)) => {
            return Err(ConfigError::new(at, "remote_jwks is not supported (the control plane inlines the keys)"));
        }
        None => return Err(ConfigError::new(at, "a provider needs local_jwks")),
    };
    let mut locations: Vec<Location> = provider
        .from_headers
        .iter()
        .map(|header| Location::Header { name: header.name.to_ascii_lowercase(), prefix: header.value_prefix.clone() })
        .chain(provider.from_params.iter().cloned().map(Location::Param))
        .collect();
    if !provider.from_cookies.is_empty() {
        return Err(ConfigError::new(at, "from_cookies is not supported"));
    }
    if locations.is_empty() {
        locations = vec![
            Location::Header { name: "authorization".into(), prefix: "Bearer ".into() },
            Location::Param("access_token".into()),
        ];
    }
    let keys = KeySet::from_jwks(&jwks);
    if keys.len() == 0 {
        tracing::warn!("{at}: the JWKS has no usable key; every token for this provider fails");
    }
    Ok(Provider {
        checks: Checks {
            issuer: provider.issuer.clone(),
            audiences: provider.audiences.clone(),
            clock_skew: if provider.clock_skew_seconds == 0 {
                DEFAULT_CLOCK_SKEW
            } else {
                u64::from(provider.clock_skew_seconds)
            },
            require_expiration: provider.require_expiration,
        },
        keys,
        verified: std::sync::Mutex::new(HashMap::new()),
        locations,
        forward: provider.forward,
        payload_in_metadata: provider.payload_in_metadata.clone(),
    })
}

fn compile_requirement(
    requirement: &JwtRequirement,
    providers: &HashMap<String, Provider>,
    at: &str,
) -> Result<Requirement, ConfigError> {
    let known = |name: &str| {
        if providers.contains_key(name) {
            Ok(name.to_string())
        } else {
            Err(ConfigError::new(at, format!("provider {name} is not configured")))
        }
    };
    let list = |requirements: &[JwtRequirement], kind: &str| {
        requirements
            .iter()
            .enumerate()
            .map(|(index, one)| compile_requirement(one, providers, &format!("{at}.{kind}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &requirement.requires_type {
        Some(RequiresType::ProviderName(name)) => Requirement::Provider { name: known(name)?, audiences: None },
        Some(RequiresType::ProviderAndAudiences(with)) => {
            Requirement::Provider { name: known(&with.provider_name)?, audiences: Some(with.audiences.clone()) }
        }
        Some(RequiresType::RequiresAny(any)) => Requirement::Any(list(&any.requirements, "requires_any")?),
        Some(RequiresType::RequiresAll(all)) => Requirement::All(list(&all.requirements, "requires_all")?),
        Some(RequiresType::AllowMissingOrFailed(_)) => Requirement::AllowMissingOrFailed,
        Some(RequiresType::AllowMissing(_)) => Requirement::AllowMissing,
        Some(RequiresType::ExtractOnlyWithoutValidation(_)) => {
            return Err(ConfigError::new(at, "extract_only_without_validation is not supported"));
        }
        None => return Err(ConfigError::new(at, "a requirement needs a type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use istio_pki::jwk::JwtIssuer;
    use serde_json::json;
    use token::tests::RSA_KEY;

    struct Request {
        path: String,
        headers: Vec<(String, String)>,
    }

    impl TokenSource for Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
        }
        fn query_param(&self, name: &str) -> Option<String> {
            let query = self.path.split_once('?')?.1;
            query.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_string))
        }
        fn path_and_query(&self) -> &str {
            &self.path
        }
        fn is_cors_preflight(&self) -> bool {
            false
        }
    }

    fn request(path: &str, authorization: Option<&str>) -> Request {
        let headers = authorization.map(|token| ("authorization".to_string(), format!("Bearer {token}")));
        Request { path: path.to_string(), headers: headers.into_iter().collect() }
    }

    fn filter(config: serde_json::Value) -> JwtAuthn {
        let config: JwtAuthentication = istio_xds::json::message_from_json(&config).expect("config");
        JwtAuthn::compile(&config, "test").expect("compile")
    }

    fn provider(issuer: &JwtIssuer, name: &str) -> serde_json::Value {
        json!({"issuer": name, "forward": true, "payloadInMetadata": name,
               "localJwks": {"inlineString": issuer.jwks()}})
    }

    #[test]
    fn a_required_provider_gives_401_reasons_and_keeps_the_payload() {
        let issuer = JwtIssuer::from_pem(RSA_KEY, "k").expect("rsa");
        let filter = filter(json!({
            "providers": {"origins-0": provider(&issuer, "testing@secure.istio.io")},
            "rules": [
                {"match": {"path": "/health"}},
                {"match": {"prefix": "/"}, "requires": {"providerName": "origins-0"}},
            ],
        }));
        let good = issuer.sign(&json!({"iss": "testing@secure.istio.io", "sub": "alice"})).expect("sign");
        let outcome = filter.authenticate(&request("/headers", Some(&good)));
        assert_eq!(outcome.result, None);
        assert_eq!(outcome.payloads["testing@secure.istio.io"]["sub"], "alice");
        assert_eq!(filter.authenticate(&request("/headers", None)).result, Some(JwtError::Missing));
        assert_eq!(filter.authenticate(&request("/health", None)).result, None, "the open rule matches first");
        assert_eq!(filter.authenticate(&request("/headers", Some("a.b"))).result, Some(JwtError::BadFormat));
        let in_query = request(&format!("/headers?access_token={good}"), None);
        assert_eq!(filter.authenticate(&in_query).result, None, "access_token is a default location");
    }

    #[test]
    fn requirement_combinations_follow_envoy() {
        let first = JwtIssuer::ec("a").expect("ec");
        let second = JwtIssuer::ec("b").expect("ec");
        let config = |requires: serde_json::Value| {
            filter(json!({
                "providers": {"one": provider(&first, "one"), "two": provider(&second, "two")},
                "rules": [{"match": {"prefix": "/"}, "requires": requires}],
            }))
        };
        let from_second = second.sign(&json!({"iss": "two"})).expect("sign");
        let forged = first.sign(&json!({"iss": "two"})).expect("sign");
        let any = config(json!({"requiresAny": {"requirements": [{"providerName": "one"}, {"providerName": "two"}]}}));
        assert_eq!(any.authenticate(&request("/", Some(&from_second))).result, None);
        assert_eq!(any.authenticate(&request("/", None)).result, Some(JwtError::Missing));
        assert_eq!(
            any.authenticate(&request("/", Some(&forged))).result,
            Some(JwtError::NoMatchingKey),
            "the unknown issuer of one alternative counts as no token; the other's reason is heard"
        );
        let any_or_none =
            config(json!({"requiresAny": {"requirements": [{"providerName": "one"}, {"allowMissing": {}}]}}));
        assert_eq!(any_or_none.authenticate(&request("/", None)).result, None);
        assert_eq!(
            any_or_none.authenticate(&request("/", Some(&from_second))).result,
            Some(JwtError::UnknownIssuer),
            "allow_missing does not accept another issuer's token"
        );
        assert_eq!(any_or_none.authenticate(&request("/", Some("a.b"))).result, Some(JwtError::BadFormat));
        let missing_ok = config(json!({"allowMissing": {}}));
        assert_eq!(missing_ok.authenticate(&request("/", None)).result, None);
        assert_eq!(
            missing_ok.authenticate(&request("/", Some(&forged))).result,
            Some(JwtError::NoMatchingKey),
            "another kid"
        );
        let anything = config(json!({"allowMissingOrFailed": {}}));
        assert_eq!(anything.authenticate(&request("/", Some(&forged))).result, None);
        let outcome = anything.authenticate(&request("/", Some(&from_second)));
        assert_eq!(outcome.payloads["two"]["iss"], "two", "verified payloads are kept even when optional");
        let audience = config(json!({"providerAndAudiences": {"providerName": "two", "audiences": ["svc"]}}));
        assert_eq!(audience.authenticate(&request("/", Some(&from_second))).result, Some(JwtError::AudienceNotAllowed));
    }

    #[test]
    fn a_token_verified_before_still_has_its_claims_checked() {
        let issuer = JwtIssuer::ec("a").expect("ec");
        let filter = filter(json!({
            "providers": {"p": provider(&issuer, "i")},
            "rules": [
                {"match": {"prefix": "/strict"}, "requires": {"providerAndAudiences": {"providerName": "p", "audiences": ["svc"]}}},
                {"match": {"prefix": "/"}, "requires": {"providerName": "p"}},
            ],
        }));
        let token = issuer.sign(&json!({"iss": "i", "aud": "other"})).expect("sign");
        assert_eq!(filter.authenticate(&request("/open", Some(&token))).result, None, "verified and remembered");
        assert_eq!(filter.authenticate(&request("/open", Some(&token))).result, None, "from the cache");
        assert_eq!(
            filter.authenticate(&request("/strict", Some(&token))).result,
            Some(JwtError::AudienceNotAllowed),
            "the cache keeps the signature's verdict, not the claims'"
        );
    }

    #[test]
    fn unknown_providers_and_remote_jwks_are_refused() {
        let config: JwtAuthentication = istio_xds::json::message_from_json(&json!({
            "rules": [{"match": {"prefix": "/"}, "requires": {"providerName": "nobody"}}],
        }))
        .expect("config");
        let error = JwtAuthn::compile(&config, "test").expect_err("refused").to_string();
        assert!(error.contains("test.rules[0].requires") && error.contains("nobody"), "{error}");
        let config: JwtAuthentication = istio_xds::json::message_from_json(&json!({
            "providers": {"p": {"issuer": "i", "remoteJwks": {"httpUri": {"uri": "https://x/jwks", "cluster": "c", "timeout": "1s"}}}},
        }))
        .expect("config");
        assert!(JwtAuthn::compile(&config, "test").expect_err("refused").to_string().contains("remote_jwks"));
    }
}
