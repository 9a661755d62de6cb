//! The client's reply parser: any bytes, split anywhere, give the same
//! replies (or errors) and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::smtp::client::reply::ReplyParser;

fn replies(chunks: &[&[u8]]) -> Vec<String> {
    let mut p = ReplyParser::default();
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c);
        while let Some(r) = p.next_reply() {
            out.push(match r {
                Ok(r) => format!("{} {:?} {}", r.code, r.enhanced(), r.one_line()),
                Err(e) => format!("error {e}"),
            });
        }
    }
    out
}

fuzz_target!(|input: (Vec<u8>, u16)| {
    let (data, cut) = input;
    let cut = cut as usize % (data.len() + 1);
    let whole = replies(&[&data]);
    let split = replies(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split);
});
