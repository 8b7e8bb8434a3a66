//! Stop signal selection: the CRI `ContainerConfig.stop_signal` enum, the image's `StopSignal`
//! string, and the SIGTERM fallback.

use cri_api::v1::{ContainerConfig, Signal};

use crate::{ImageDefaults, SpecError};

/// SIGTERM on every Linux architecture crius targets.
pub const SIGTERM: i32 = 15;

// glibc reserves the first two real-time signals for its threading implementation, so the
// user-visible SIGRTMIN is 34 (what `kill -l` prints and what Go/Docker use).
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// The signal that stops the container, as a number.
///
/// Precedence: a non-default `config.stop_signal` wins, then the image's `StopSignal`
/// (accepted forms: `SIGUSR1`, `USR1`, `usr1`, `10`, `SIGRTMIN+3`, `RTMAX-2`), then SIGTERM.
pub fn stop_signal(image: &ImageDefaults, config: &ContainerConfig) -> Result<i32, SpecError> {
    if config.stop_signal != Signal::RuntimeDefault as i32 {
        let signal = Signal::try_from(config.stop_signal).map_err(|_| SpecError::Invalid {
            field: "stop_signal".into(),
            reason: format!("unknown signal enum value {}", config.stop_signal),
        })?;
        return parse_signal(signal.as_str_name()).ok_or_else(|| SpecError::Invalid {
            field: "stop_signal".into(),
            reason: format!("{} has no number on Linux", signal.as_str_name()),
        });
    }
    let from_image = image.stop_signal.trim();
    if from_image.is_empty() {
        return Ok(SIGTERM);
    }
    parse_signal(from_image).ok_or_else(|| SpecError::Invalid {
        field: "image.config.StopSignal".into(),
        reason: format!("unknown signal {from_image:?}"),
    })
}

/// Parses a signal name or number into its Linux number; `None` when it is not a signal.
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return (1..=SIGRTMAX).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(n) = realtime(name) {
        return Some(n);
    }
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" | "CLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => return None,
    };
    Some(n)
}

/// `RTMIN`, `RTMIN+n`, `RTMINPLUSn` (the CRI enum spelling), `RTMAX`, `RTMAX-n`, `RTMAXMINUSn`.
fn realtime(name: &str) -> Option<i32> {
    let offset = |rest: &str, seps: &[&str]| -> Option<i32> {
        if rest.is_empty() {
            return Some(0);
        }
        let digits = seps.iter().find_map(|sep| rest.strip_prefix(sep))?;
        digits.parse::<i32>().ok()
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        SIGRTMIN + offset(rest, &["+", "PLUS"])?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        SIGRTMAX - offset(rest, &["-", "MINUS"])?
    } else {
        return None;
    };
    (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(sig: &str) -> ImageDefaults {
        ImageDefaults {
            stop_signal: sig.into(),
            ..Default::default()
        }
    }

    #[test]
    fn default_is_sigterm() {
        assert_eq!(
            stop_signal(&image(""), &ContainerConfig::default()).unwrap(),
            15
        );
    }

    #[test]
    fn image_forms() {
        for (text, n) in [
            ("SIGUSR1", 10),
            ("USR1", 10),
            ("usr1", 10),
            ("sigquit", 3),
            ("9", 9),
            ("SIGRTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("RTMAX-2", 62),
            ("SIGRTMAX", 64),
            ("SIGCLD", 17),
        ] {
            assert_eq!(
                stop_signal(&image(text), &ContainerConfig::default()).unwrap(),
                n,
                "{text}"
            );
        }
    }

    #[test]
    fn image_bad_names_are_invalid() {
        for text in ["SIGFOO", "0", "65", "-1", "RTMIN+40", "RTMAX+1"] {
            let err = stop_signal(&image(text), &ContainerConfig::default()).unwrap_err();
            assert!(
                matches!(&err, SpecError::Invalid { field, .. } if field == "image.config.StopSignal"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn config_wins_over_image() {
        let config = ContainerConfig {
            stop_signal: Signal::Sigusr2 as i32,
            ..Default::default()
        };
        assert_eq!(stop_signal(&image("SIGQUIT"), &config).unwrap(), 12);
        let config = ContainerConfig {
            stop_signal: Signal::Sigrtminplus1 as i32,
            ..Default::default()
        };
        assert_eq!(stop_signal(&image(""), &config).unwrap(), 35);
        let config = ContainerConfig {
            stop_signal: Signal::Sigrtmaxminus1 as i32,
            ..Default::default()
        };
        assert_eq!(stop_signal(&image(""), &config).unwrap(), 63);
    }

    #[test]
    fn every_cri_signal_has_a_number() {
        for v in 1..=65 {
            let config = ContainerConfig {
                stop_signal: v,
                ..Default::default()
            };
            let n = stop_signal(&image(""), &config).unwrap();
            assert!((1..=64).contains(&n), "enum {v} -> {n}");
        }
        let config = ContainerConfig {
            stop_signal: 999,
            ..Default::default()
        };
        assert!(matches!(
            stop_signal(&image(""), &config),
            Err(SpecError::Invalid { field, .. }) if field == "stop_signal"
        ));
    }
}
