//! Signal names as users give them: `SIGTERM`, `TERM`, `term` or `15`.

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::Error;

/// Parses a signal name or number.
pub(crate) fn parse(s: &str) -> Result<Signal, Error> {
    let trimmed = s.trim();
    let parsed = match trimmed.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let upper = trimmed.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
            Signal::from_str(&name).ok()
        }
    };
    parsed.ok_or_else(|| {
        Error::invalid(format!("invalid signal \"{s}\": give a name like SIGTERM, TERM or KILL, or a number like 15"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse("SIGTERM").expect("ok"), Signal::SIGTERM);
        assert_eq!(parse("kill").expect("ok"), Signal::SIGKILL);
        assert_eq!(parse("HUP").expect("ok"), Signal::SIGHUP);
        assert_eq!(parse("9").expect("ok"), Signal::SIGKILL);
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("0").is_err());
    }
}
