//! Envoy's small matching types, compiled once: string matchers (exact, prefix, suffix,
//! contains, RE2-style full-match regex, optionally case-insensitive) and fractional
//! percentages (`numerator` out of a hundred, ten thousand or a million).

use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher as EnvoyStringMatcher};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use regex::Regex;

use super::ConfigError;

/// A compiled `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone)]
pub(crate) enum StringMatcher {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(Regex),
}

impl StringMatcher {
    pub(crate) fn compile(matcher: &EnvoyStringMatcher, field: &str) -> Result<StringMatcher, ConfigError> {
        let ignore_case = matcher.ignore_case;
        let fold = |text: &String| if ignore_case { text.to_lowercase() } else { text.clone() };
        Ok(match &matcher.match_pattern {
            Some(MatchPattern::Exact(text)) => StringMatcher::Exact(fold(text), ignore_case),
            Some(MatchPattern::Prefix(text)) => StringMatcher::Prefix(fold(text), ignore_case),
            Some(MatchPattern::Suffix(text)) => StringMatcher::Suffix(fold(text), ignore_case),
            Some(MatchPattern::Contains(text)) => StringMatcher::Contains(fold(text), ignore_case),
            Some(MatchPattern::SafeRegex(regex)) => StringMatcher::Regex(full_regex(&regex.regex, field)?),
            Some(MatchPattern::Custom(_)) => {
                return Err(ConfigError::new(field, "custom string matchers are not supported"))
            }
            None => return Err(ConfigError::new(field, "a string matcher needs a pattern")),
        })
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        let folded = |ignore_case: bool| if ignore_case { value.to_lowercase() } else { value.to_string() };
        match self {
            StringMatcher::Exact(expected, ignore_case) => folded(*ignore_case) == *expected,
            StringMatcher::Prefix(prefix, ignore_case) => folded(*ignore_case).starts_with(prefix.as_str()),
            StringMatcher::Suffix(suffix, ignore_case) => folded(*ignore_case).ends_with(suffix.as_str()),
            StringMatcher::Contains(part, ignore_case) => folded(*ignore_case).contains(part.as_str()),
            StringMatcher::Regex(regex) => regex.is_match(value),
        }
    }
}

/// Envoy's `safe_regex` must match the whole value.
pub(crate) fn full_regex(pattern: &str, field: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|error| ConfigError::new(field, format!("invalid regex {pattern:?}: {error}")))
}

/// A `FractionalPercent` as a probability in [0, 1]; absent means always.
pub(crate) fn fraction(percent: Option<&FractionalPercent>) -> f64 {
    let Some(percent) = percent else { return 1.0 };
    let denominator = match DenominatorType::try_from(percent.denominator).unwrap_or(DenominatorType::Hundred) {
        DenominatorType::Hundred => 100.0,
        DenominatorType::TenThousand => 10_000.0,
        DenominatorType::Million => 1_000_000.0,
    };
    (f64::from(percent.numerator) / denominator).min(1.0)
}

/// Whether an event with probability `probability` happens this time.
pub(crate) fn roll(probability: f64) -> bool {
    probability >= 1.0 || (probability > 0.0 && rand::random::<f64>() < probability)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;

    fn matcher(pattern: MatchPattern, ignore_case: bool) -> StringMatcher {
        StringMatcher::compile(&EnvoyStringMatcher { match_pattern: Some(pattern), ignore_case }, "m").expect("compile")
    }

    #[test]
    fn string_matchers() {
        assert!(matcher(MatchPattern::Exact("jason".into()), false).matches("jason"));
        assert!(!matcher(MatchPattern::Exact("jason".into()), false).matches("Jason"));
        assert!(matcher(MatchPattern::Exact("jason".into()), true).matches("Jason"));
        assert!(matcher(MatchPattern::Prefix("/api".into()), false).matches("/api/v1"));
        let regex =
            matcher(MatchPattern::SafeRegex(RegexMatcher { regex: "v[0-9]+".into(), ..Default::default() }), false);
        assert!(regex.matches("v12"));
        assert!(!regex.matches("v12x"), "safe_regex matches the whole value");
    }

    #[test]
    fn bad_regex_names_the_field() {
        let error = StringMatcher::compile(
            &EnvoyStringMatcher {
                match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher { regex: "(".into(), ..Default::default() })),
                ignore_case: false,
            },
            "routes[0].match.headers[0]",
        )
        .expect_err("bad regex");
        assert!(error.to_string().contains("routes[0].match.headers[0]"), "{error}");
    }

    #[test]
    fn fractions() {
        assert_eq!(fraction(None), 1.0);
        let half = FractionalPercent { numerator: 50, denominator: DenominatorType::Hundred as i32 };
        assert_eq!(fraction(Some(&half)), 0.5);
        let tiny = FractionalPercent { numerator: 5, denominator: DenominatorType::Million as i32 };
        assert!((fraction(Some(&tiny)) - 0.000005).abs() < 1e-12);
        assert!(roll(1.0) && !roll(0.0));
    }
}
