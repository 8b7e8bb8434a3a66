//! Image references come from pods, the kubelet and registries' answers: parsing is total, a
//! parsed reference prints to a string that parses to itself, and its parts stay in the grammar.
#![no_main]

use crius_image::reference;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = reference::parse(s) else {
        return;
    };
    let printed = r.to_string();
    let again = reference::parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{s:?} -> {printed:?}");
    assert!(
        !r.repository
            .split('/')
            .any(|c| c.is_empty() || c == ".." || c == "."),
        "{r:?}"
    );
    assert!(
        !printed.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{printed:?}"
    );
    // The derived names must parse too: crius stores and looks images up by them.
    for name in [Some(r.name()), r.tagged()].into_iter().flatten() {
        assert!(reference::parse(&name).is_ok(), "{name:?} from {s:?}");
    }
});
