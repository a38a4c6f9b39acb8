//! The drill's HTML report.
