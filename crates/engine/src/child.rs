//! What bunker passes on to the processes it starts (hooks, command targets, pg_dump, servers): never
//! its own secrets. `BUNKER_PASSWORD` and every other `BUNKER_*PASSWORD*` or `BUNKER_*PASSPHRASE*`
//! variable (an identity's passphrase) stay in this process;
//! a child that needs a password gets its own (pg_dump's `PGPASSWORD`, a daemon job's repository
//! password) set explicitly on its command.

use std::process::Command;

/// Whether an environment variable holds one of bunker's own secrets.
pub fn is_secret_var(name: &str) -> bool {
    name.starts_with("BUNKER_") && (name.contains("PASSWORD") || name.contains("PASSPHRASE"))
}

/// Removes bunker's secrets from what `cmd` inherits.
pub fn scrub_secrets(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_secret_var) {
            cmd.env_remove(name);
        }
    }
    cmd
}
