//! End-of-data detection. Whatever the bytes and however they are split,
//! the content kept is canonical (every LF is part of CRLF, no bare CR),
//! the end is found only after a line that is a single dot, and splitting
//! the input differently never changes the outcome.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::smtp::data::DataReader;

fn run(data: &[u8], cuts: &[usize]) -> (Option<usize>, Vec<u8>) {
    let mut r = DataReader::new(0);
    let mut pos = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(data.len());
    for b in bounds {
        if b <= pos {
            continue;
        }
        let (n, done) = r.feed(&data[pos..b]);
        pos += n;
        if done {
            return (Some(pos), r.into_content());
        }
    }
    (None, r.into_content())
}

fuzz_target!(|input: (Vec<u8>, Vec<usize>)| {
    let (data, cuts) = input;
    let whole = run(&data, &[]);
    let split = run(&data, &cuts);
    assert_eq!(whole, split, "the split changed the outcome");
    let (end, content) = whole;
    for (i, &b) in content.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && content[i - 1] == b'\r', "bare LF kept");
        }
        if b == b'\r' {
            assert_eq!(content.get(i + 1), Some(&b'\n'), "bare CR kept");
        }
    }
    if let Some(end) = end {
        // The consumed input ends with a line holding a single dot, and
        // that line starts the input or follows a line break.
        let consumed = &data[..end];
        let body = consumed
            .strip_suffix(b".\r\n")
            .or_else(|| consumed.strip_suffix(b".\n"));
        let body = body.expect("end of data without a dot line");
        assert!(body.is_empty() || body.ends_with(b"\n") || body.ends_with(b"\r"));
    }
});
