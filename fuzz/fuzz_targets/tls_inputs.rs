//! What the transport-security code reads from other parties: an MTA-STS
//! policy body, `_mta-sts` and `_smtp._tls` TXT records (from the
//! network) and an OCSP response (from a responder or a file). Any bytes give a value or an
//! error, never a panic; a policy that parses keeps its invariants.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::outbound::mta_sts::policy;
use mailgate::outbound::tlsrpt::rua;
use mailgate::tls::ocsp;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, serial) = input;
    if let Ok(text) = std::str::from_utf8(&data) {
        if let Ok(p) = policy::parse(text) {
            assert!(p.max_age <= policy::MAX_AGE_LIMIT);
            assert!(p.mode == policy::Mode::None || !p.mx.is_empty());
            for m in &p.mx {
                let _ = p.matches(m.trim_start_matches("*."));
            }
        }
        let txts: Vec<String> = text.split('\n').map(str::to_string).collect();
        let _ = policy::record_id(&txts);
        if let Ok(Some(dests)) = rua::parse(&txts) {
            assert!(!dests.is_empty());
        }
        let _ = rua::txt_text(text);
    }
    if let Ok(s) = ocsp::parse(&data, &serial) {
        assert_eq!(s.der, data);
    }
});
