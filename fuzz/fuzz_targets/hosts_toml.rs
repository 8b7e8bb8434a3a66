//! hosts.toml is admin-written but parsed at every pull: any text gives endpoints or an error
//! naming the file, never a panic; every endpoint is an http(s) URL.
#![no_main]

use std::path::Path;

use crius_image::hosts;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/crius/certs.d/reg/hosts.toml");
    match hosts::parse_hosts(text, file, "reg") {
        Ok(eps) => {
            for e in eps {
                assert!(matches!(e.url.scheme(), "http" | "https"), "{}", e.url);
            }
        }
        Err(e) => assert!(e.to_string().contains("hosts.toml"), "{e}"),
    }
});
