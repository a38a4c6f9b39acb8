//! A process-wide "stop now" flag. The binary sets it from its signal handler; long loops poll it and end
//! with [`Error::Interrupted`](crate::Error::Interrupted), leaving nothing that looks complete behind.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

pub fn check() -> crate::Result<()> {
    if requested() {
        Err(crate::Error::Interrupted)
    } else {
        Ok(())
    }
}
