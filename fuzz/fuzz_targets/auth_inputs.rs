//! What message authentication reads from other parties: a message header
//! block with Authentication-Results headers to strip (from a client), a
//! zone file (from an admin, for `auth check`) and a DNS query to answer
//! from it (from the resolver). Any bytes give a value or an error, never
//! a panic; stripping never touches the body or keeps a header with our id.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::dns::{serve, zone::Zone};
use mailgate::inbound::auth::results;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, query) = input;
    let (out, removed) = results::strip_own(&data, "mx.example.net");
    assert!(out.len() <= data.len());
    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        assert!(out.ends_with(&data[i + 2..]));
    }
    if removed == 0 {
        assert_eq!(out, data);
    }
    let (again, n) = results::strip_own(&out, "mx.example.net");
    assert_eq!(n, 0);
    assert_eq!(again, out);
    if let Ok(text) = std::str::from_utf8(&data)
        && let Ok(z) = Zone::parse(text, "fuzz")
    {
        let _ = serve::answer(&z, &query, true);
        let _ = serve::answer(&z, &query, false);
    }
});
