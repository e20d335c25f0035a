//! When the nightly run fires, with an injectable clock so tests can drive
//! days of schedule without waiting.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The time source of the scheduler.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Resolves at (or after) `t`.
    fn sleep_until(&self, t: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, t: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Re-check in bounded steps: the wall clock may jump (NTP, suspend).
            loop {
                let now = Timestamp::now();
                if now >= t {
                    return;
                }
                let wait = t
                    .duration_since(now)
                    .unsigned_abs()
                    .min(std::time::Duration::from_secs(60));
                tokio::time::sleep(wait).await;
            }
        })
    }
}

/// The daily schedule: `at` (hour, minute) local time in `tz`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub hour: i8,
    pub minute: i8,
    pub tz: TimeZone,
}

impl Schedule {
    /// The instant of the run on local date `d`. A time that does not exist
    /// that day (DST gap) runs just after the gap; one that exists twice
    /// runs the first time.
    pub fn on(&self, d: Date) -> Option<Timestamp> {
        self.tz.to_timestamp(d.at(self.hour, self.minute, 0, 0)).ok()
    }

    /// The latest scheduled instant at or before `now`.
    pub fn previous(&self, now: Timestamp) -> Option<Timestamp> {
        let today = self.date_of(now);
        match self.on(today) {
            Some(t) if t <= now => Some(t),
            _ => self.on(today.yesterday().ok()?),
        }
    }

    /// The first scheduled instant strictly after `now`.
    pub fn next(&self, now: Timestamp) -> Option<Timestamp> {
        let today = self.date_of(now);
        match self.on(today) {
            Some(t) if t > now => Some(t),
            _ => self.on(today.tomorrow().ok()?),
        }
    }

    /// The local date of an instant: a snapshot's label.
    pub fn date_of(&self, t: Timestamp) -> Date {
        t.to_zoned_datetime(self.tz.clone()).date()
    }
}

/// Runs `job` at every scheduled instant, and at once if the last run
/// (`last_run`, persisted by the caller) is older than the latest scheduled
/// instant: a proxy that was down at that time catches up when it starts.
/// `job` gets the instant it runs at; it stops the loop with `Break`.
/// `schedule` is asked again whenever `changed` resolves during a wait (a
/// reload), never while `job` runs.
pub async fn run<C, S, W, WF, F, Fut>(
    clock: &C,
    schedule: S,
    mut changed: W,
    mut last_run: Option<Timestamp>,
    mut job: F,
) where
    C: Clock + ?Sized,
    S: Fn() -> Schedule,
    W: FnMut() -> WF,
    WF: Future<Output = ()>,
    F: FnMut(Timestamp) -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    loop {
        let schedule = schedule();
        let now = clock.now();
        let due = schedule.previous(now);
        if due.is_some_and(|due| last_run.is_none_or(|last| last < due)) {
            last_run = Some(now);
            if job(now).await.is_break() {
                return;
            }
            continue;
        }
        let Some(next) = schedule.next(now) else {
            return;
        };
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct FakeClock(Mutex<Timestamp>);

    impl Clock for FakeClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap()
        }
        fn sleep_until(&self, t: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            let mut now = self.0.lock().unwrap();
            if *now < t {
                *now = t;
            }
            Box::pin(async {})
        }
    }

    fn schedule(at: (i8, i8), tz: &str) -> Schedule {
        Schedule {
            hour: at.0,
            minute: at.1,
            tz: TimeZone::get(tz).unwrap(),
        }
    }

    fn local(s: &Schedule, t: Timestamp) -> String {
        t.to_zoned_datetime(s.tz.clone()).strftime("%Y-%m-%d %H:%M").to_string()
    }

    /// Runs the scheduler on a fake clock and records the local run times.
    async fn fire(s: &Schedule, start: &str, last: Option<&str>, runs: usize) -> Vec<String> {
        let start: Timestamp =
            s.tz.to_timestamp(start.parse::<jiff::civil::DateTime>().unwrap())
                .unwrap();
        let last = last.map(|l| s.tz.to_timestamp(l.parse::<jiff::civil::DateTime>().unwrap()).unwrap());
        let clock = FakeClock(Mutex::new(start));
        let mut fired = Vec::new();
        run(
            &clock,
            || s.clone(),
            std::future::pending::<()>,
            last,
            |t| {
                fired.push(local(s, t));
                let done = fired.len() >= runs;
                async move {
                    if done {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
            },
        )
        .await;
        fired
    }

    #[tokio::test]
    async fn fires_at_local_midnight_across_a_dst_change() {
        let s = schedule((0, 0), "Europe/Berlin");
        // Ran last night: next run is tomorrow 00:00 local, every day, also
        // over the spring-forward night of 2026-03-29.
        let got = fire(&s, "2026-03-27T10:00", Some("2026-03-27T00:00:05"), 4).await;
        assert_eq!(
            got,
            [
                "2026-03-28 00:00",
                "2026-03-29 00:00",
                "2026-03-30 00:00",
                "2026-03-31 00:00"
            ]
        );
    }

    #[tokio::test]
    async fn a_missed_run_is_taken_at_start() {
        let s = schedule((0, 0), "Europe/Berlin");
        let got = fire(&s, "2026-11-25T09:30", Some("2026-11-23T00:00:03"), 2).await;
        assert_eq!(got, ["2026-11-25 09:30", "2026-11-26 00:00"]);
        // A fresh store has never run: run now.
        let got = fire(&s, "2026-11-25T09:30", None, 1).await;
        assert_eq!(got, ["2026-11-25 09:30"]);
    }

    #[tokio::test]
    async fn a_time_inside_the_dst_gap_runs_once_after_it() {
        let s = schedule((2, 30), "Europe/Berlin");
        let got = fire(&s, "2026-03-28T12:00", Some("2026-03-28T02:30"), 3).await;
        assert_eq!(got, ["2026-03-29 03:30", "2026-03-30 02:30", "2026-03-31 02:30"]);
        // Autumn: 02:30 happens twice on 2026-10-25; it runs once.
        let got = fire(&s, "2026-10-24T12:00", Some("2026-10-24T02:30"), 2).await;
        assert_eq!(got, ["2026-10-25 02:30", "2026-10-26 02:30"]);
    }

    #[test]
    fn labels_are_local_dates() {
        let s = schedule((0, 0), "America/New_York");
        let t: Timestamp = "2026-11-25T03:00:00Z".parse().unwrap();
        assert_eq!(s.date_of(t).to_string(), "2026-11-24");
    }

    /// A clock whose waits never end by themselves: only a change of the
    /// schedule can make the loop look again.
    struct StoppedClock(Timestamp);

    impl Clock for StoppedClock {
        fn now(&self) -> Timestamp {
            self.0
        }
        fn sleep_until(&self, _: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_reloaded_schedule_is_planned_again_at_once() {
        // Waiting for 23:00; a reload moves the run to 09:30, already past
        // today and after the last run: it runs now, not at 23:00.
        let late = schedule((23, 0), "Europe/Berlin");
        let early = schedule((9, 30), "Europe/Berlin");
        let at = |l: &str| {
            late.tz
                .to_timestamp(l.parse::<jiff::civil::DateTime>().unwrap())
                .unwrap()
        };
        let clock = StoppedClock(at("2026-11-25T10:00"));
        let current = Mutex::new(late.clone());
        let reloads = Mutex::new(0);
        let mut fired = Vec::new();
        run(
            &clock,
            || current.lock().unwrap().clone(),
            || {
                let mut n = reloads.lock().unwrap();
                *n += 1;
                let first = *n == 1;
                if first {
                    *current.lock().unwrap() = early.clone();
                }
                async move {
                    if !first {
                        std::future::pending::<()>().await;
                    }
                }
            },
            Some(at("2026-11-25T00:00")),
            |t| {
                fired.push(local(&late, t));
                async { ControlFlow::Break(()) }
            },
        )
        .await;
        assert_eq!(fired, ["2026-11-25 10:00"]);
        assert_eq!(*reloads.lock().unwrap(), 1);
    }
}
