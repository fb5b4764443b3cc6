//! Cron expressions: parsing and the next tick, in UTC or an IANA time zone.

use std::str::FromStr;

use chrono::Utc;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::model::{CronJob, check_name};
use crate::{Error, Result, Timestamp};

/// A parsed schedule.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    cron: Cron,
    tz: Option<chrono_tz::Tz>,
}

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with leading seconds) and a time zone.
    pub(crate) fn parse(expr: &str, time_zone: Option<&str>) -> Result<Self> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| Error::invalid(format!("invalid cron expression '{expr}': {e}")))?;
        let tz = match time_zone {
            None => None,
            Some(name) => Some(chrono_tz::Tz::from_str(name).map_err(|_| {
                Error::invalid(format!("unknown time zone '{name}' (use an IANA name)"))
            })?),
        };
        Ok(Self { cron, tz })
    }

    /// The first tick strictly after `t`.
    pub(crate) fn next_after(&self, t: Timestamp) -> Result<Timestamp> {
        let none = |_| Error::invalid("the cron expression never fires again");
        match self.tz {
            None => self.cron.find_next_occurrence(&t, false).map_err(none),
            Some(tz) => self
                .cron
                .find_next_occurrence(&t.with_timezone(&tz), false)
                .map(|n| n.with_timezone(&Utc))
                .map_err(none),
        }
    }
}

/// Checks a cron definition and returns its parsed schedule.
pub(crate) fn validate(c: &CronJob) -> Result<Schedule> {
    check_name("cron name", &c.name)?;
    c.job.validate()?;
    Schedule::parse(&c.schedule, c.time_zone.as_deref())
}

/// The idempotency key of one tick's job.
pub(crate) fn tick_key(name: &str, tick: Timestamp) -> String {
    format!("cron:{name}:{}", tick.timestamp_micros())
}

/// Where a due entry goes next: the first tick after `now` (missed ticks are skipped;
/// the due one fires once).
pub(crate) fn next_after_due(s: &Schedule, due: Timestamp, now: Timestamp) -> Result<Timestamp> {
    s.next_after(if now > due { now } else { due })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_and_six_field_expressions() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 30).unwrap();
        let s = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 15, 0).unwrap()
        );
        let s = Schedule::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 40).unwrap()
        );
    }

    #[test]
    fn time_zones_shift_the_tick() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_input_is_invalid() {
        assert!(matches!(
            Schedule::parse("nonsense", None),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")),
            Err(Error::InvalidInput(_))
        ));
    }
}
