//! Named points where a test can freeze the process to kill it there (`kill -9`), proving crash safety
//! at exact places rather than at lucky timings. Set `BUNKER_PAUSE_AT=NAME` (or `NAME#N` for the N-th
//! time the point is passed): the process prints `bunker: paused at NAME` on stderr and sleeps, forever,
//! or for `BUNKER_PAUSE_FOR_MS` milliseconds and then goes on (to change the world under a running command).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

fn target() -> &'static Option<(String, u64)> {
    static T: OnceLock<Option<(String, u64)>> = OnceLock::new();
    T.get_or_init(|| {
        let v = std::env::var("BUNKER_PAUSE_AT").ok()?;
        Some(match v.split_once('#') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    })
}

pub fn pause_point(name: &str) {
    let Some((want, nth)) = target() else { return };
    if want != name {
        return;
    }
    static COUNTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let mut counts = COUNTS.get_or_init(Default::default).lock().expect("failpoint counts");
    let c = counts.entry(name.to_string()).or_insert(0);
    *c += 1;
    if *c == *nth {
        eprintln!("bunker: paused at {name}");
        match std::env::var("BUNKER_PAUSE_FOR_MS").ok().and_then(|v| v.parse().ok()) {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
        }
    }
}
