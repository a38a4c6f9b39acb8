//! Exit codes (documented in the README) and signal handling.

use bunker_engine::Error;

pub use bunker_ops::codes::*;

/// Whether `e` is stdout's reader having gone away.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// A closed stdout ends the process quietly with [`CLOSED_STDOUT`] instead of a panic and a backtrace:
/// `println!` panics when its write fails, and SIGPIPE stays ignored so that a child that dies (a
/// pg_restore fed through a pipe) is an error we report, not a signal that kills us. The panic is kept
/// quiet here and unwinds (so locks are released on the way); `main` turns it into the exit code.
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_stdout(info.payload()) {
            default(info);
        }
    }));
}

/// Whether a panic's payload is `println!` failing on a closed stdout.
pub fn is_closed_stdout(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.contains("failed printing to stdout") && msg.contains("Broken pipe")
}

pub fn code_for(e: &anyhow::Error) -> i32 {
    if e.chain().any(is_cancelled) {
        return CANCELLED;
    }
    bunker_ops::codes::of_engine(e.chain().find_map(engine_error))
}

/// The exit code of an operation's error (as [`code_for`]).
pub fn code_for_operation(e: &bunker_ops::Error) -> i32 {
    bunker_ops::codes::of(e)
}

/// The engine error behind a failure, also when a source or an operation wrapped it.
fn engine_error<'a>(c: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    c.downcast_ref::<Error>()
        .or_else(|| c.downcast_ref::<bunker_sources::SourceError>().and_then(|s| s.engine()))
        .or_else(|| c.downcast_ref::<bunker_ops::Error>().and_then(|o| o.engine()))
}

/// Whether a person declined a confirmation prompt.
fn is_cancelled(c: &(dyn std::error::Error + 'static)) -> bool {
    let source =
        c.downcast_ref::<bunker_sources::SourceError>().or_else(|| match c.downcast_ref::<bunker_ops::Error>() {
            Some(bunker_ops::Error::Source(s)) => Some(s),
            _ => None,
        });
    matches!(source, Some(bunker_sources::SourceError::Cancelled(_)))
}

/// The error and its causes on one line, without repeating a cause the message already includes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}

/// First SIGINT/SIGTERM: ask every loop to stop (locks are released, nothing half-done is committed).
/// Second: exit at once.
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
    std::thread::spawn(move || {
        let mut seen = 0;
        for _ in signals.forever() {
            seen += 1;
            if seen == 1 {
                bunker_engine::interrupt::request();
                eprintln!("bunker: interrupted, stopping (again to exit at once)");
            } else {
                std::process::exit(INTERRUPTED);
            }
        }
    });
}
