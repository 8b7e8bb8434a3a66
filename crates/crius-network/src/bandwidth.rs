//! Pod bandwidth from the kubelet's traffic-shaping annotations (`kubernetes.io/ingress-bandwidth`,
//! `kubernetes.io/egress-bandwidth`), turned into the CNI bandwidth capability the way containerd does:
//! the rate is the quantity in bit/s, the burst is left effectively unlimited.

use std::collections::BTreeMap;

use crate::error::NetworkError;
use crate::Bandwidth;

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// The kubelet's sanity bounds on a shaping rate: 1 kbit/s ..= 1 Pbit/s.
const MIN_RATE: u64 = 1_000;
const MAX_RATE: u64 = 1_000_000_000_000_000;
/// There is no annotation for the burst; this keeps the token bucket from being the limit.
const UNLIMITED_BURST: u64 = u32::MAX as u64;

/// `Ok(None)` when neither annotation is present; otherwise a shaping request where an absent
/// direction has rate and burst 0 (the bandwidth plugin leaves that direction alone).
pub fn bandwidth_from_annotations(
    a: &BTreeMap<String, String>,
) -> Result<Option<Bandwidth>, NetworkError> {
    let ingress = a
        .get(INGRESS_ANNOTATION)
        .map(|v| rate(INGRESS_ANNOTATION, v))
        .transpose()?;
    let egress = a
        .get(EGRESS_ANNOTATION)
        .map(|v| rate(EGRESS_ANNOTATION, v))
        .transpose()?;
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    Ok(Some(Bandwidth {
        ingress_rate: ingress.unwrap_or(0),
        ingress_burst: if ingress.is_some() {
            UNLIMITED_BURST
        } else {
            0
        },
        egress_rate: egress.unwrap_or(0),
        egress_burst: if egress.is_some() { UNLIMITED_BURST } else { 0 },
    }))
}

fn rate(key: &str, value: &str) -> Result<u64, NetworkError> {
    let bad = |reason: String| NetworkError::InvalidAnnotation {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    let v = parse_quantity(value).map_err(bad)?;
    if v < MIN_RATE {
        return Err(bad("unreasonably small (< 1kbit)".to_string()));
    }
    if v > MAX_RATE {
        return Err(bad("unreasonably large (> 1Pbit)".to_string()));
    }
    Ok(v)
}

/// Parses a Kubernetes resource quantity (`10M`, `1.5Gi`, `500m`, `1e6`) and rounds it up to an
/// integer, like `Quantity.Value()`. Negative quantities are rejected.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("negative quantity".to_string());
    }
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(format!("{s:?} is not a quantity"));
    }
    let digits = format!("{int_part}{frac_part}");
    let too_big = || format!("{s:?} is too large");
    let mantissa: u128 = digits.parse().map_err(|_| too_big())?;
    let mut num: u128 = mantissa;
    let mut den: u128 = 10u128
        .checked_pow(frac_part.len() as u32)
        .ok_or_else(too_big)?;
    let pow = |base: u128, e: u32| base.checked_pow(e).ok_or_else(too_big);
    let (mul, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (pow(10, 6)?, 1),
        "G" => (pow(10, 9)?, 1),
        "T" => (pow(10, 12)?, 1),
        "P" => (pow(10, 15)?, 1),
        "E" => (pow(10, 18)?, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| format!("{s:?}: bad exponent"))?;
            if exp.unsigned_abs() > 30 {
                return Err(format!("{s:?}: exponent out of range"));
            }
            if exp >= 0 {
                (pow(10, exp as u32)?, 1)
            } else {
                (1, pow(10, exp.unsigned_abs())?)
            }
        }
        other => return Err(format!("{s:?}: unknown suffix {other:?}")),
    };
    num = num.checked_mul(mul).ok_or_else(too_big)?;
    den = den.checked_mul(div).ok_or_else(too_big)?;
    let value = num.div_ceil(den);
    u64::try_from(value).map_err(|_| too_big())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cases: &[(&str, u64)] = &[
            ("10M", 10_000_000),
            ("1k", 1000),
            ("1Ki", 1024),
            ("1.5Gi", 1_610_612_736),
            ("100", 100),
            ("+2G", 2_000_000_000),
            ("1500m", 2),
            ("1e3", 1000),
            ("25E-1", 3),
            ("0.5", 1),
            ("1P", 1_000_000_000_000_000),
        ];
        for (q, want) in cases {
            assert_eq!(parse_quantity(q).as_ref(), Ok(want), "{q}");
        }
        for bad in [
            "",
            "M",
            "-1M",
            "10X",
            "1e",
            "99999999999999999999999999999999999999999E",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn annotations() {
        let mut a = BTreeMap::new();
        assert_eq!(bandwidth_from_annotations(&a).unwrap(), None);
        a.insert("other".to_string(), "1".to_string());
        assert_eq!(bandwidth_from_annotations(&a).unwrap(), None);
        a.insert(INGRESS_ANNOTATION.to_string(), "10M".to_string());
        assert_eq!(
            bandwidth_from_annotations(&a).unwrap(),
            Some(Bandwidth {
                ingress_rate: 10_000_000,
                ingress_burst: UNLIMITED_BURST,
                egress_rate: 0,
                egress_burst: 0
            })
        );
        a.insert(EGRESS_ANNOTATION.to_string(), "1Mi".to_string());
        let bw = bandwidth_from_annotations(&a).unwrap().unwrap();
        assert_eq!(
            (bw.egress_rate, bw.egress_burst),
            (1_048_576, UNLIMITED_BURST)
        );
        for (v, why) in [("10", "small"), ("2P", "large"), ("ten", "not a quantity")] {
            a.insert(EGRESS_ANNOTATION.to_string(), v.to_string());
            let err = bandwidth_from_annotations(&a).unwrap_err().to_string();
            assert!(
                err.contains(EGRESS_ANNOTATION) && err.contains(why),
                "{v}: {err}"
            );
        }
    }
}
