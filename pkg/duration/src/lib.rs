//! Go's duration syntax, the way Istio's flags (`--drainDuration 45s`) and YAML
//! (`timeout: 30ms`, `connectTimeout: 1m`) write durations: parsing as Go's `time.ParseDuration`
//! does, printing as Go's `Duration.String` does, and rewriting a Go duration into the proto3
//! JSON form (`0.030s`) the protobuf mapping accepts. It sits below every other crate, so the API
//! types, the injector and the proxy all read durations the same way.

use std::time::Duration;

/// Text that is not a duration a flag can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a Go duration such as 45s, 1m0s or 300ms")]
pub struct DurationError(pub String);

/// A Go duration flag value (`45s`, `1m0s`, `2.5s`); negative durations are refused.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    parse_signed_nanos(text)
        .filter(|nanos| *nanos >= 0)
        .and_then(|nanos| u64::try_from(nanos).ok())
        .map(Duration::from_nanos)
        .ok_or_else(|| DurationError(text.to_string()))
}

/// Converts Go's syntax (`1h2m3.5s`, `300ms`, `-1.5h`) into the proto3 JSON form of a
/// `google.protobuf.Duration` (`3723.500s`); `None` for text that is not a Go duration.
pub fn to_proto_json(text: &str) -> Option<String> {
    let total_nanos = parse_signed_nanos(text)?;
    let negative = total_nanos < 0;
    let total_nanos = total_nanos.abs();
    let seconds = total_nanos / 1_000_000_000;
    let nanos = total_nanos % 1_000_000_000;
    let sign = if negative { "-" } else { "" };
    Some(if nanos == 0 { format!("{sign}{seconds}s") } else { format!("{sign}{seconds}.{nanos:09}s") })
}

/// Go's `time.ParseDuration`, in signed nanoseconds.
pub fn parse_signed_nanos(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_nanos: i128 = 0;
    while !rest.is_empty() {
        let number_length = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_length == 0 {
            return None;
        }
        let number = &rest[..number_length];
        rest = &rest[number_length..];
        let unit_length = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_length];
        rest = &rest[unit_length..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        total_nanos = total_nanos.checked_add(whole.checked_mul(scale)?)?;
        if !fraction.is_empty() {
            let digits = fraction.len().min(18) as u32;
            let fraction_value: i128 = fraction[..digits as usize].parse().ok()?;
            // Rounded to the nearest nanosecond, as Go's floating-point arithmetic ends up.
            let denominator = 10_i128.pow(digits);
            total_nanos = total_nanos.checked_add((fraction_value * scale + denominator / 2) / denominator)?;
        }
    }
    Some(if negative { -total_nanos } else { total_nanos })
}

/// Formats a duration as Go's `time.Duration.String` does (`45s`, `1m0s`, `1h0m0s`, `500ms`).
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos >= 1_000_000 {
            ("ms", 1_000_000)
        } else if nanos >= 1_000 {
            ("µs", 1_000)
        } else {
            ("ns", 1)
        };
        return format!("{}{unit}", trim_fraction(nanos, scale));
    }
    let total_seconds = duration.as_secs();
    let hours = total_seconds / 3600;
    let minutes = (total_seconds % 3600) / 60;
    let seconds_nanos = u128::from(total_seconds % 60) * 1_000_000_000 + u128::from(duration.subsec_nanos());
    let seconds = format!("{}s", trim_fraction(seconds_nanos, 1_000_000_000));
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

/// `value / scale` with the fraction's trailing zeros dropped.
fn trim_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_go_durations() {
        assert_eq!(parse("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "5x", "-1s", "s", "1.2.3s"] {
            let error = parse(bad).expect_err(bad);
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn go_durations_become_proto_durations() {
        for (go, proto) in [
            ("5s", "5s"),
            ("0.5s", "0.500000000s"),
            ("30ms", "0.030000000s"),
            ("3m", "180s"),
            ("1h30m", "5400s"),
            ("24h", "86400s"),
            ("1.5h", "5400s"),
            ("100us", "0.000100000s"),
            ("0", "0s"),
            ("-2s", "-2s"),
        ] {
            assert_eq!(to_proto_json(go).as_deref(), Some(proto), "{go}");
        }
        for bad in ["", "5", "s", "5x", "1..5s", "abc"] {
            assert_eq!(to_proto_json(bad), None, "{bad}");
        }
    }

    /// Cases from Go's own `time.ParseDuration` table.
    #[test]
    fn parses_as_go_does() {
        for (text, nanos) in [
            ("0", 0),
            ("5s", 5_000_000_000),
            ("30s", 30_000_000_000),
            ("1478s", 1_478_000_000_000),
            ("-5s", -5_000_000_000),
            ("+5s", 5_000_000_000),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5_000_000_000),
            ("5.6s", 5_600_000_000),
            ("5.s", 5_000_000_000),
            (".5s", 500_000_000),
            ("1.0s", 1_000_000_000),
            ("1.004s", 1_004_000_000),
            ("100.00100s", 100_001_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12\u{b5}s", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14_000_000_000),
            ("15m", 900_000_000_000),
            ("16h", 57_600_000_000_000),
            ("3h30m", 12_600_000_000_000),
            ("10.5s4m", 250_500_000_000),
            ("-2m3.4s", -123_400_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 1_200_000_000_000),
        ] {
            assert_eq!(parse_signed_nanos(text), Some(nanos), "{text}");
        }
        for bad in ["", "3", "-", "s", ".", "-.", ".s", "+.s", "1d"] {
            assert_eq!(parse_signed_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_durations_like_go() {
        assert_eq!(format(Duration::from_secs(45)), "45s");
        assert_eq!(format(Duration::from_secs(60)), "1m0s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_micros(1)), "1\u{b5}s");
        assert_eq!(format(Duration::from_nanos(3_723_004_005_006)), "1h2m3.004005006s");
        for seconds in [1, 59, 61, 3599, 3601, 86400] {
            let duration = Duration::from_secs(seconds);
            assert_eq!(parse(&format(duration)), Ok(duration), "{seconds}s");
        }
    }
}
