//! Numbers: percentiles, process memory and CPU time, a seeded PRNG, time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    pub(crate) fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            samples: ms.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// Put and get samples of a run: latency, success, requests. Reads of
/// immutable records (which end at the first valid copy) and of mutable
/// ones (which ask every holder for the newest version) are kept apart.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    puts: Vec<Duration>,
    gets: Vec<Duration>,
    mutable_gets: Vec<Duration>,
    put_requests: Vec<f64>,
    get_requests: Vec<f64>,
    mutable_get_requests: Vec<f64>,
}

impl Rounds {
    /// A put that took `took` and, if it succeeded, sent `requests`.
    pub(crate) fn put(&mut self, took: Duration, requests: Option<f64>) {
        self.puts.push(took);
        self.put_requests.extend(requests);
    }

    /// A get (of a mutable record if `mutable`) that took `took` and, if it
    /// found the right value, sent `requests`.
    pub(crate) fn get(&mut self, mutable: bool, took: Duration, requests: Option<f64>) {
        if mutable {
            self.mutable_gets.push(took);
            self.mutable_get_requests.extend(requests);
        } else {
            self.gets.push(took);
            self.get_requests.extend(requests);
        }
    }

    pub(crate) fn put_latency(&self) -> Latency {
        Latency::of(&self.puts)
    }

    /// Reads of immutable records.
    pub(crate) fn get_latency(&self) -> Latency {
        Latency::of(&self.gets)
    }

    /// Reads of mutable records.
    pub(crate) fn mutable_get_latency(&self) -> Latency {
        Latency::of(&self.mutable_gets)
    }

    pub(crate) fn put_success(&self) -> f64 {
        self.put_requests.len() as f64 / self.puts.len().max(1) as f64
    }

    /// Reads of either kind that found the right value.
    pub(crate) fn get_success(&self) -> f64 {
        let found = self.get_requests.len() + self.mutable_get_requests.len();
        found as f64 / (self.gets.len() + self.mutable_gets.len()).max(1) as f64
    }

    pub(crate) fn requests_per_put(&self) -> f64 {
        mean(&self.put_requests)
    }

    pub(crate) fn requests_per_get(&self) -> f64 {
        mean(&self.get_requests)
    }

    pub(crate) fn requests_per_mutable_get(&self) -> f64 {
        mean(&self.mutable_get_requests)
    }
}

/// Mean of a list, 0 when empty.
pub(crate) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// A field of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`), 0 if unknown.
pub(crate) fn status_bytes(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The machine's physical memory (`MemTotal` of `/proc/meminfo`), 0 if
/// unknown.
pub(crate) fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// This process's current resident memory.
pub(crate) fn rss() -> u64 {
    status_bytes("self", "VmRSS:")
}

/// This process's peak resident memory.
pub(crate) fn peak_rss() -> u64 {
    status_bytes("self", "VmHWM:")
}

/// CPU time (user + system) this process used so far, from `/proc/self/stat`
/// (clock ticks of 1/100 s on Linux).
pub(crate) fn cpu_time() -> Duration {
    crate::procs::process_cpu("self")
}

/// A small deterministic PRNG (xorshift64*), so runs pick the same nodes.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Two different numbers below `n` (n > 1).
    pub(crate) fn pair(&mut self, n: usize) -> (usize, usize) {
        let a = self.below(n);
        let b = (a + 1 + self.below(n - 1)) % n;
        (a, b)
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(&samples);
        assert_eq!(
            (
                latency.p50_ms,
                latency.p90_ms,
                latency.p99_ms,
                latency.max_ms
            ),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(&[Duration::from_millis(7)]).p99_ms, 7.0);
        assert_eq!(Latency::of(&[]).samples, 0);
    }

    #[test]
    fn pairs_are_distinct_and_in_range() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let (a, b) = rng.pair(3);
            assert!(a < 3 && b < 3 && a != b);
        }
    }

    #[test]
    fn dates_are_civil() {
        let date = utc_now();
        assert_eq!(date.len(), 20);
        assert!(date.starts_with("20"), "{date}");
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        assert!(rss() > 0);
        assert!(peak_rss() >= rss() / 2);
        let _ = cpu_time();
    }
}
