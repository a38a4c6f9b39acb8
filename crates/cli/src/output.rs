//! Printing: human tables on stdout, or JSON with `--json`; sizes in binary units.

use std::io::IsTerminal;

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

pub fn json<T: serde::Serialize>(value: &T) {
    let kept = COLLECTED.with(|c| match c.borrow_mut().as_mut() {
        Some(list) => {
            list.push(serde_json::to_value(value).expect("serialisable"));
            true
        }
        None => false,
    });
    if !kept {
        println!("{}", serde_json::to_string_pretty(value).expect("serialisable"));
    }
}

thread_local! {
    static COLLECTED: std::cell::RefCell<Option<Vec<serde_json::Value>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with what it would print through [`json`] kept and returned instead, so a command made of
/// others (`restore --point`) prints one document.
pub fn collect_json<R>(f: impl FnOnce() -> R) -> (R, Vec<serde_json::Value>) {
    let outer = COLLECTED.with(|c| c.replace(Some(Vec::new())));
    let result = f();
    let collected = COLLECTED.with(|c| c.replace(outer)).unwrap_or_default();
    (result, collected)
}

/// A live byte counter on stderr, only when stderr is a terminal.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(enabled: bool, what: &str) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}")
                .expect("valid template"),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress { bar: Some(bar) }
    }

    pub fn set(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
        }
    }

    pub fn is_active(&self) -> bool {
        self.bar.is_some()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
