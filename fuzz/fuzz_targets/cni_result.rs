//! A CNI plugin's stdout is parsed as its result (any of the formats crius accepts): any bytes
//! give IPs and interface names or an error, never a panic; IPs come without duplicates, IPv4
//! first; names come without duplicates; the sandbox addresses are strings the result holds.
#![no_main]

#[path = "../../crates/crius-network/src/result.rs"]
#[allow(dead_code)]
mod result;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok((ips, names)) = result::parse_result(&v) {
        for (i, ip) in ips.iter().enumerate() {
            assert!(!ips[..i].contains(ip), "duplicate {ip}");
        }
        assert!(
            ips.windows(2).all(|w| w[0].is_ipv4() || w[1].is_ipv6()),
            "{ips:?}"
        );
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "duplicate {n}");
        }
    }
    let text = String::from_utf8_lossy(data);
    for ifname in ["eth0", ""] {
        for a in result::sandbox_addresses(&v, ifname) {
            // JSON escapes aside, an address is a string of the result.
            if !text.contains('\\') {
                assert!(text.contains(&a), "{a:?} is not in the result");
            }
        }
    }
});
