//! Test plugin for the sandbox. By recipient local part:
//! `loop` spins forever, `bomb` allocates until memory runs out, `trap`
//! panics (a wasm trap), `garbage` answers with reply code 700, `kv` tries
//! the kv capability and rejects with "kv not granted" when refused,
//! `dnstxt` rejects with the TXT record of `policy.mgtest`, `dnssec` with
//! that record and whether the answer was DNSSEC-validated, `count`
//! rejects with how many `count` recipients this instance has seen (its
//! memory outlives a transaction only when the host reuses instances),
//! `hog` keeps 9 MiB for the life of the instance, `routing` tries to add
//! a per-recipient header outside a route hook.
//! Every accepted message gets `X-Misbehave: seen`.

use mailgate_plugin_sdk_v1::*;

struct Misbehave;

static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Plugin for Misbehave {
    const NAME: &'static str = "misbehave";
    const HOOKS: &'static [Hook] = &[Hook::RcptTo, Hook::Data];

    fn on_rcpt_to(_ctx: &Context, rcpt: &str) -> Response {
        let local = rcpt.split('@').next().unwrap_or("");
        match local {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut v: Vec<Vec<u8>> = Vec::new();
                loop {
                    v.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&v);
                }
            }
            "trap" => panic!("deliberate trap"),
            "count" => {
                let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Response::reject(550, "5.7.1", &format!("count {n}"))
            }
            "hog" => {
                std::hint::black_box(Box::leak(vec![7u8; 9 << 20].into_boxed_slice()));
                Response::next()
            }
            "garbage" => Response::reject(700, "9.9.9", "not a reply code"),
            "dnstxt" => match dns::lookup("policy.mgtest", dns::RecordType::Txt) {
                Ok(a) => Response::reject(550, "5.7.1", &format!("txt: {}", a.records.join(" | "))),
                Err(_) => Response::defer(451, "4.4.3", "dns refused or failed"),
            },
            "dnssec" => match dns::lookup("policy.mgtest", dns::RecordType::Txt) {
                Ok(a) => Response::reject(
                    550,
                    "5.7.1",
                    &format!("secure={} txt: {}", a.secure, a.records.join(" | ")),
                ),
                Err(_) => Response::defer(451, "4.4.3", "dns refused or failed"),
            },
            "kv" => match kv::set("probe", b"1", 60) {
                Ok(()) => Response::next().with(Action::SetVar(("kv".into(), "ok".into()))),
                Err(_) => Response::reject(550, "5.7.1", "kv not granted"),
            },
            "routing" => match routing::add_header("X-Smuggled", "1") {
                Ok(()) => Response::reject(550, "5.7.1", "routing header taken at RCPT"),
                Err(_) => Response::reject(550, "5.7.1", "routing header refused at RCPT"),
            },
            _ => Response::next(),
        }
    }

    fn on_data(_ctx: &Context, _msg: &Message) -> Response {
        Response::next().with(Action::AddHeader(("X-Misbehave".into(), "seen".into())))
    }
}

export_plugin!(Misbehave);
