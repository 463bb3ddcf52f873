//! Sizes and durations as people write them in flags and config files.

use std::time::Duration;

/// "4096", "64K", "8M", "1G": bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 8M"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s} is too large"))
}

/// "500ms", "5s", "1h": a duration of at least `min`.
pub fn parse_duration(s: &str, min: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 5s or 1h: {e}"))?;
    if d < min {
        return Err(format!(
            "{s} must be at least {}",
            humantime::format_duration(min)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("8M"), Ok(8 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("17179869185G").is_err(), "no wrap-around");
        assert!(parse_bytes("x").is_err());
        assert_eq!(
            parse_duration("2s", Duration::from_secs(1)),
            Ok(Duration::from_secs(2))
        );
        assert!(parse_duration("10ms", Duration::from_secs(1))
            .unwrap_err()
            .contains("at least 1s"));
    }
}
