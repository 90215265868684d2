//! Time for the core: a clock trait so tests can move time, and the document's date format.

/// Seconds since the Unix epoch, from the host in production and from the test in unit tests.
pub trait Clock {
    fn now(&self) -> u64;
}

/// A fixed instant is a clock that never moves (tests, fuzzing).
impl Clock for u64 {
    fn now(&self) -> u64 {
        *self
    }
}

/// A clock read at most once: the event's defaults, the limit and the signature of one request
/// share one reading, and a request that needs none of them makes no clock call.
pub struct OnceClock<'a> {
    clock: &'a dyn Clock,
    now: std::cell::OnceCell<u64>,
}

impl<'a> OnceClock<'a> {
    pub fn new(clock: &'a dyn Clock) -> Self {
        OnceClock {
            clock,
            now: std::cell::OnceCell::new(),
        }
    }
}

impl Clock for OnceClock<'_> {
    fn now(&self) -> u64 {
        *self.now.get_or_init(|| self.clock.now())
    }
}

/// Formats Unix seconds as the document's `execution_date`: `YYYY-MM-DD HH:MM:SS` (UTC).
/// Written here because the `time` crate would add about 34 KB to the module for this one format.
pub fn format_utc(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60,
        secs_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_documents_example_and_edges() {
        assert_eq!(format_utc(1_641_286_959), "2022-01-04 09:02:39");
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(4_107_542_399), "2100-02-28 23:59:59");
        assert_eq!(format_utc(4_107_542_400), "2100-03-01 00:00:00");
    }
}
