//! Notifications (being written): failures, recoveries and warnings to webhooks, Slack, email and
//! healthchecks.io-style pings.

/// Sets up the process's notifier from the stack file (none: nothing is sent).
pub fn install(_config: Option<&bunker_config::Config>) {}

/// A healthchecks.io-style "start" ping for a job (`backup`, a schedule's name…).
pub fn ping_start(_job: &str) {}

/// The ping that ends a job: success for exit code 0, else failure with the code.
pub fn ping_finish(_job: &str, _exit_code: i32) {}
