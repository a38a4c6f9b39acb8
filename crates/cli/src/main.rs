//! The `bunker` binary: flags → a plan → calls into the engine and the sources. Each verb is a module of
//! `commands`; errors are turned into one line and a documented exit code here, at the edge.

mod cli;
mod commands;
mod context;
mod exit;
mod http;
mod output;
mod redact;
mod runs;

use clap::Parser;

fn main() {
    tune_allocator();
    let args = cli::Cli::parse();
    init_logging(args.global.verbose, args.global.quiet);
    exit::install_signal_handlers();
    exit::quiet_on_closed_stdout();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commands::run(args)));
    let ran = match ran {
        Ok(r) => r,
        Err(payload) if exit::is_closed_stdout(payload.as_ref()) => std::process::exit(exit::CLOSED_STDOUT),
        Err(payload) => std::panic::resume_unwind(payload),
    };
    let code = match ran {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bunker: error: {}", exit::one_line(&e));
            exit::code_for(&e)
        }
    };
    std::process::exit(code);
}

/// The pipeline allocates and frees megabyte-sized buffers (chunks, sealed blobs, packs) all the time.
/// glibc's default hands such blocks back to the kernel and faults fresh pages in on the next one; on a
/// VM that page-fault traffic costs more CPU than sealing the data. Keeping freed memory for reuse makes
/// it cheap; peak memory is bounded by the pipeline anyway.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,bunker=info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUNKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(redact::Redacting::new()).with_target(false).init();
}
