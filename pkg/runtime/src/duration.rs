//! Durations written the way Istio 1.4's Go flags wrote them (`45s`, `1m0s`, `2.5s`, `300ms`,
//! `1h30m`), so injected pod specs and old command lines parse unchanged.

use std::time::Duration;

/// Parses a Go `time.Duration` string: a sequence of decimal numbers, each with a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). A bare `0` is zero; negative durations are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: expected a Go duration such as 45s, 1m0s or 300ms");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    while !rest.is_empty() {
        let number_length = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_length].parse().map_err(|_| invalid())?;
        rest = &rest[number_length..];
        let unit_length = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_length] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_length..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// Formats a duration as Go does for whole seconds and minutes (`45s`, `1m0s`, `1.5s`).
pub fn format_go_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 60.0 && duration.subsec_nanos() == 0 {
        let whole = duration.as_secs();
        let (hours, minutes, secs) = (whole / 3600, (whole % 3600) / 60, whole % 60);
        return if hours > 0 { format!("{hours}h{minutes}m{secs}s") } else { format!("{minutes}m{secs}s") };
    }
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if seconds >= 1.0 {
        format!("{seconds}s")
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_durations_injection_templates_use() {
        assert_eq!(parse_go_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_go_duration("1m0s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "10", "5x", "-1s", "s", "1.2.3s"] {
            let error = parse_go_duration(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(300)), "300ms");
    }
}
