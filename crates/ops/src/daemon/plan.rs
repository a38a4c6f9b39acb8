//! When each scheduled job runs next: its cron pattern in its time zone, plus a random delay of up to
//! its jitter; a job whose last fire time passed while the daemon was down runs once at start. Every
//! decision takes the clock as an argument, so the tests need no sleeping.

use std::collections::HashMap;
use std::time::Duration;

use bunker_config::Schedule;
use chrono::{DateTime, Utc};

/// A job and when it runs next.
#[derive(Debug, Clone)]
pub struct Planned {
    pub schedule: Schedule,
    /// The next run, jitter included (`None`: the pattern never matches again).
    pub next: Option<DateTime<Utc>>,
    /// When the job last started, from the catalog or this daemon.
    pub last_started: Option<DateTime<Utc>>,
    /// Its last exit code, when this daemon ran it.
    pub last_exit: Option<i32>,
}

/// Draws the random delay for a job whose jitter is the argument (`Duration::ZERO` gives zero).
pub type Jitter<'a> = &'a mut dyn FnMut(Duration) -> Duration;

/// Whether a job's last fire time at or before `now` came after its last start: the daemon was down
/// (or busy) then. A job never run before has missed nothing.
pub fn missed(schedule: &Schedule, last_started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match (schedule.last_at_or_before(now), last_started) {
        (Some(fire), Some(started)) => started < fire,
        _ => false,
    }
}

/// A uniformly random delay in `[0, max)`.
pub fn random_jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rand::random::<f64>())
}

fn with_jitter(t: Option<DateTime<Utc>>, max: Duration, jitter: Jitter) -> Option<DateTime<Utc>> {
    let delay = chrono::Duration::from_std(jitter(max)).unwrap_or_default();
    t.map(|t| t + delay)
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub jobs: Vec<Planned>,
}

impl Plan {
    /// Plans `schedules` as of `now`. `last_started` maps job names to their last start (from the
    /// catalog); with `catch_up`, a job that missed its last fire time is due at once.
    pub fn new(
        schedules: &[Schedule],
        now: DateTime<Utc>,
        last_started: &HashMap<String, DateTime<Utc>>,
        catch_up: bool,
        jitter: Jitter,
    ) -> Plan {
        let jobs = schedules
            .iter()
            .map(|s| {
                let last = last_started.get(&s.name).copied();
                let next = if catch_up && missed(s, last, now) {
                    Some(now)
                } else {
                    with_jitter(s.next_after(now), s.jitter, jitter)
                };
                Planned { schedule: s.clone(), next, last_started: last, last_exit: None }
            })
            .collect();
        Plan { jobs }
    }

    /// The job due first at or before `now`, if any.
    pub fn due(&self, now: DateTime<Utc>) -> Option<usize> {
        self.jobs
            .iter()
            .enumerate()
            .filter_map(|(i, j)| j.next.filter(|t| *t <= now).map(|t| (t, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Job `i` started at `started` and ended at `ended` with `exit`: its next run is the first fire time
    /// after it ended (fire times it overran are skipped, not queued), plus jitter.
    pub fn ran(&mut self, i: usize, started: DateTime<Utc>, ended: DateTime<Utc>, exit: i32, jitter: Jitter) {
        let job = &mut self.jobs[i];
        job.last_started = Some(started);
        job.last_exit = Some(exit);
        job.next = with_jitter(job.schedule.next_after(ended), job.schedule.jitter, jitter);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;

    fn schedules(text: &str) -> Vec<Schedule> {
        bunker_config::Config::parse_with_env(text, Path::new("/t.toml"), &|_| None).unwrap().schedules
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    fn no_jitter(_: Duration) -> Duration {
        Duration::ZERO
    }

    #[test]
    fn jobs_run_at_their_next_fire_time() {
        let s = schedules("[schedules]\nbackup = \"0 1 * * *\"\nstatus = \"*/10 * * * *\"\n");
        let plan = Plan::new(&s, at(0, 55, 0), &HashMap::new(), true, &mut no_jitter);
        assert_eq!(plan.jobs[0].next, Some(at(1, 0, 0)));
        assert_eq!(plan.jobs[1].next, Some(at(1, 0, 0)));
        assert_eq!(plan.due(at(0, 59, 59)), None);
        assert_eq!(plan.due(at(1, 0, 0)), Some(0), "the earlier in file order first on a tie");
    }

    #[test]
    fn a_missed_fire_time_runs_once_at_start() {
        let s = schedules("[schedules]\nbackup = \"0 1 * * *\"\ncheck = \"0 5 * * 0\"\n");
        let mut last = HashMap::new();
        // Last backup started yesterday at 01:00; the daemon was down at 01:00 today.
        last.insert("backup".to_string(), at(1, 0, 0) - chrono::Duration::days(1));
        last.insert("check".to_string(), at(1, 0, 0) - chrono::Duration::days(1));
        let plan = Plan::new(&s, at(9, 0, 0), &last, true, &mut no_jitter);
        assert_eq!(plan.jobs[0].next, Some(at(9, 0, 0)), "backup missed today's 01:00");
        // 2026-11-21 is a Saturday: the last Sunday 05:00 was 2026-11-15, before the last check.
        assert_eq!(plan.jobs[1].next, Some(Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0).unwrap()));
        let plan = Plan::new(&s, at(9, 0, 0), &last, false, &mut no_jitter);
        assert_eq!(plan.jobs[0].next, Some(at(1, 0, 0) + chrono::Duration::days(1)), "--no-catch-up");
        let plan = Plan::new(&s, at(9, 0, 0), &HashMap::new(), true, &mut no_jitter);
        assert_eq!(plan.jobs[0].next, Some(at(1, 0, 0) + chrono::Duration::days(1)), "never run: nothing missed");
    }

    #[test]
    fn a_job_that_ran_late_is_not_a_miss() {
        let s = schedules("[schedules]\njitter = \"10m\"\nbackup = \"0 1 * * *\"\n");
        assert!(!missed(&s[0], Some(at(1, 7, 0)), at(9, 0, 0)), "started within its jitter after 01:00");
        assert!(missed(&s[0], Some(at(0, 59, 0)), at(9, 0, 0)));
    }

    #[test]
    fn jitter_delays_within_its_bound() {
        let s = schedules("[schedules]\njitter = \"5m\"\nbackup = \"0 1 * * *\"\n");
        let mut max = |d: Duration| d;
        let plan = Plan::new(&s, at(0, 0, 0), &HashMap::new(), true, &mut max);
        assert_eq!(plan.jobs[0].next, Some(at(1, 5, 0)));
        for _ in 0..100 {
            let d = random_jitter(Duration::from_secs(300));
            assert!(d < Duration::from_secs(300));
        }
        assert_eq!(random_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn overrun_fire_times_are_skipped_not_queued() {
        let s = schedules("[schedules]\nbackup = \"*/5 * * * *\"\n");
        let mut plan = Plan::new(&s, at(1, 0, 0), &HashMap::new(), true, &mut no_jitter);
        assert_eq!(plan.jobs[0].next, Some(at(1, 5, 0)));
        // The 01:05 run took 12 minutes: 01:10 is skipped, the next is 01:20.
        plan.ran(0, at(1, 5, 0), at(1, 17, 0), 0, &mut no_jitter);
        assert_eq!(plan.jobs[0].next, Some(at(1, 20, 0)));
        assert_eq!(plan.jobs[0].last_exit, Some(0));
    }

    #[test]
    fn time_zones_move_the_fire_time() {
        let s = schedules("[schedules]\ntimezone = \"America/New_York\"\nbackup = \"0 1 * * *\"\n");
        let plan = Plan::new(&s, at(0, 0, 0), &HashMap::new(), true, &mut no_jitter);
        // 01:00 in New York in November (EST, UTC-5) is 06:00 UTC.
        assert_eq!(plan.jobs[0].next, Some(at(6, 0, 0)));
    }
}
