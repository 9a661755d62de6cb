//! Sliding-window counters in the pool's Redis, for rate limits that
//! count across gateways.
//!
//! The same approximation as the in-memory limiter: per counter, the
//! count of the current fixed window plus the previous one's weighted by
//! how much of it the sliding window still covers. Each fixed window is
//! one Redis integer that expires after two windows. All counters of one
//! command are checked and, if none would go over, incremented in one
//! script, so concurrent gateways cannot both take the last unit.

use super::redis::{Redis, Unavailable};
use std::sync::OnceLock;

/// KEYS: per counter, its current and previous window. ARGV: per counter,
/// its limit, the previous window's weight and the current window's
/// lifetime in seconds. Returns 0 when all were counted, else the 1-based
/// index of the first counter one more would exceed (nothing counted).
const TAKE: &str = r"
local n = #KEYS / 2
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[2*i-1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2*i]) or '0')
  if cur + prev * tonumber(ARGV[3*i-1]) + 1 > tonumber(ARGV[3*i-2]) then
    return i
  end
end
for i = 1, n do
  redis.call('INCR', KEYS[2*i-1])
  redis.call('EXPIRE', KEYS[2*i-1], ARGV[3*i])
end
return 0
";

fn script() -> &'static redis::Script {
    static S: OnceLock<redis::Script> = OnceLock::new();
    S.get_or_init(|| redis::Script::new(TAKE))
}

/// One counter to take a unit from.
#[derive(Debug, Clone)]
pub struct Counter {
    /// Its name (under the pool's prefix; the window index is appended).
    pub name: String,
    /// The window in seconds.
    pub window: u64,
    /// Units allowed per sliding window.
    pub limit: u32,
}

/// The Redis keys and script arguments for `counters` at `now_ms` (unix
/// time in milliseconds).
fn request(r: &Redis, counters: &[Counter], now_ms: u64) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::with_capacity(counters.len() * 2);
    let mut args = Vec::with_capacity(counters.len() * 3);
    for c in counters {
        let len = c.window.max(1) * 1000;
        let index = now_ms / len;
        let weight = (len - now_ms % len) as f64 / len as f64;
        keys.push(r.key(&format!("{}:{index}", c.name)));
        keys.push(r.key(&format!("{}:{}", c.name, index.saturating_sub(1))));
        args.push(c.limit.to_string());
        args.push(format!("{weight:.6}"));
        args.push((2 * c.window.max(1) + 1).to_string());
    }
    (keys, args)
}

/// Take one unit from every counter, or from none when one would go over
/// its limit: `Ok(None)` when taken, `Ok(Some(i))` when `counters[i]` is
/// full.
pub async fn take(r: &Redis, counters: &[Counter]) -> Result<Option<usize>, Unavailable> {
    if counters.is_empty() {
        return Ok(None);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (keys, args) = request(r, counters, now_ms);
    let i: i64 = r.eval(script(), &keys, &args).await?;
    Ok((i > 0).then(|| i as usize - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_name_the_two_windows_and_weigh_the_previous_one() {
        let cfg = crate::config::store::Store {
            redis: Some("redis://127.0.0.1:1/".into()),
            prefix: "p:".into(),
            ..Default::default()
        };
        let r = Redis::new(&cfg).unwrap();
        let c = Counter {
            name: "rl:x".into(),
            window: 60,
            limit: 5,
        };
        // 15 s into window 2 of 60 s: the previous one weighs 3/4.
        let (keys, args) = request(&r, &[c], 135_000);
        assert_eq!(keys, ["p:rl:x:2", "p:rl:x:1"]);
        assert_eq!(args, ["5", "0.750000", "121"]);
    }
}
